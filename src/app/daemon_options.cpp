// Implementation of daemon_options.hpp.
#include "app/daemon_options.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "app/region_runtime.hpp"

namespace mp::app {

namespace {

Result<std::string> read_text(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) {
    return make_error(Errc::invalid_argument, std::string(what) + ": cannot read " + path.string());
  }
  return text.str();
}

}  // namespace

std::vector<Cidr> parse_cidrs(const std::vector<std::string>& texts) {
  std::vector<Cidr> out;
  for (const auto& text : texts) {
    if (auto cidr = parse_cidr(text)) out.push_back(*cidr);
  }
  return out;
}

Result<PortalSetup> portal_setup(const config::RegionConfig& cfg) {
  PortalSetup setup;
  auto& o = setup.options;
  o.region = cfg.region;
  o.customer_id_prefix = cfg.customer_id_prefix;
  o.other_regions = cfg.portal.other_regions;
  o.max_upload_bytes = cfg.portal.max_upload_bytes;
  o.failed_attempts_per_15_minutes = cfg.portal.failed_attempts_per_15_minutes;
  o.apns.production_host = cfg.apns.production.host;
  o.apns.production_port = cfg.apns.production.port;
  o.apns.sandbox_host = cfg.apns.sandbox.host;
  o.apns.sandbox_port = cfg.apns.sandbox.port;
  o.apns.ca_file = cfg.apns.ca_file;
  if (cfg.portal.kek_file) {
    auto ring = keys::KeyRing::load_file(*cfg.portal.kek_file);
    if (!ring)
      return make_error(Errc::invalid_argument, "portal.kek_file: " + ring.error().message);
    setup.ring.emplace(std::move(*ring));
  }
  if (cfg.portal.trust_anchors) {
    auto pem = read_text(*cfg.portal.trust_anchors, "portal.trust_anchors");
    if (!pem) return std::move(pem).error();
    o.trust_anchors_pem.push_back(std::move(*pem));
  }
  if (cfg.portal.admin_token_file) {
    auto text = read_text(*cfg.portal.admin_token_file, "portal.admin_token_file");
    if (!text) return std::move(text).error();
    auto hashes = portal::PortalEndpoint::load_admin_token_hashes(*text);
    if (!hashes) {
      return make_error(Errc::invalid_argument,
                        cfg.portal.admin_token_file->string() + ": " + hashes.error().message);
    }
    o.admin_token_hashes = std::move(*hashes);
  }
  return setup;
}

http::ServerOptions server_options(const config::RegionConfig& cfg,
                                   const std::vector<Cidr>& trusted_proxies) {
  http::ServerOptions o;
  o.bind_address = cfg.listener.bind_address;
  o.port = cfg.listener.port;
  o.max_body_bytes = cfg.limits.max_body_bytes;
  o.max_header_bytes = cfg.limits.max_header_bytes;
  o.max_connections = cfg.limits.max_connections;
  o.handshake_timeout = cfg.limits.handshake_timeout;
  o.header_timeout = cfg.limits.header_timeout;
  o.request_timeout = cfg.limits.request_timeout;
  o.idle_timeout = cfg.limits.idle_timeout;
  o.max_connections_per_address = cfg.limits.max_connections_per_address;
  o.connection_burst_per_address = cfg.limits.connection_burst_per_address;
  o.connections_per_second_per_address = cfg.limits.connections_per_second_per_address;
  o.trusted_proxies = trusted_proxies;
  o.proxy_protocol = cfg.listener.proxy_protocol;
  return o;
}

http::ServerOptions portal_server_options(const http::ServerOptions& listener,
                                          const config::PortalConfig::Listen& portal) {
  http::ServerOptions o = listener;
  o.bind_address = portal.bind_address;
  o.port = portal.port;
  return o;
}

http::EwsEndpointOptions ews_endpoint_options(const config::RegionConfig& cfg,
                                              const std::vector<Cidr>& trusted_proxies) {
  http::EwsEndpointOptions o;
  o.limits = {cfg.limits.max_body_bytes, cfg.limits.max_xml_depth, cfg.limits.max_xml_elements};
  o.trusted_proxies = trusted_proxies;
  return o;
}

relay::GraphLimits graph_limits(const config::RegionConfig& cfg) {
  relay::GraphLimits l;
  l.unknown_burst = cfg.limits.unknown_secret_burst_per_address;
  l.unknown_per_second = static_cast<double>(cfg.limits.unknown_secrets_per_second_per_address);
  l.registration_burst = cfg.limits.callback_burst_per_registration;
  l.registration_per_second = static_cast<double>(cfg.limits.callbacks_per_second_per_registration);
  return l;
}

http::GraphEndpointOptions graph_endpoint_options(const std::vector<Cidr>& trusted_proxies) {
  http::GraphEndpointOptions o;
  o.trusted_proxies = trusted_proxies;
  return o;
}

relay::UnknownSecretLimit unknown_secret_limit(const config::RegionConfig& cfg) {
  return {cfg.limits.unknown_secret_burst_per_address,
          static_cast<double>(cfg.limits.unknown_secrets_per_second_per_address)};
}

relay::CallbackLimits callback_limits(const config::RegionConfig& cfg) {
  return {cfg.limits.callback_burst_per_registration,
          static_cast<double>(cfg.limits.callbacks_per_second_per_registration),
          cfg.limits.callback_burst_per_customer,
          static_cast<double>(cfg.limits.callbacks_per_second_per_customer)};
}

store::PoolOptions lookup_pool_options(const config::RegionConfig& cfg) {
  store::PoolOptions o = pool_options(cfg.database);
  o.threads = std::max<std::size_t>(1, cfg.database.pool_size / 4);
  o.queue_limit = 256;
  return o;
}

relay::RegistrationOptions registration_options(const config::RegionConfig& cfg) {
  relay::RegistrationOptions o;
  o.region = cfg.region;
  o.customer_id_prefix = cfg.customer_id_prefix;
  o.listener_host = cfg.listener.public_host;
  o.listener_port = cfg.listener.port;  // 0 (tests): the request's port
  o.status_frequency_minutes = cfg.registration.status_frequency_minutes;
  o.per_customer_per_minute = cfg.registration.per_customer_per_minute;
  o.max_per_device = cfg.registration.max_per_device;
  o.max_per_customer = cfg.registration.max_per_customer;
  o.refusals_per_address_per_minute = cfg.registration.refusals_per_address_per_minute;
  o.other_regions = cfg.registration.other_regions;
  return o;
}

dispatch::DispatcherOptions dispatcher_options(const config::RegionConfig& cfg, std::string owner) {
  dispatch::DispatcherOptions o;
  o.owner = std::move(owner);
  o.batch = cfg.dispatch.batch;
  o.ttl = cfg.dispatch.ttl;
  o.lease = cfg.dispatch.lease;
  o.poll = cfg.dispatch.poll;
  o.gather = cfg.dispatch.gather;
  o.pause_probe = cfg.dispatch.pause_probe;
  o.retry.max_attempts = static_cast<int>(cfg.dispatch.max_attempts);
  return o;
}

dispatch::ApnsSenderOptions apns_sender_options(const config::RegionConfig& cfg) {
  dispatch::ApnsSenderOptions o;
  o.production = cfg.apns.production;
  o.sandbox = cfg.apns.sandbox;
  o.pool.max_connections = cfg.dispatch.apns_connections;
  // A send that cannot finish in this time goes back to the outbox with a backoff; it also
  // bounds how long SIGTERM waits for the round in flight.
  o.pool.send_deadline = std::chrono::seconds(10);
  o.pool.max_attempts = 3;
  o.pool.close_grace = std::chrono::seconds(2);
  return o;
}

}  // namespace mp::app
