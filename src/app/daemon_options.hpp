// The region file mapped onto each component's options: every place where a config field meets
// the component it configures, so that no component reads the region file itself.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/cidr.hpp"
#include "common/result.hpp"
#include "config/region_config.hpp"
#include "dispatch/apns_badge_sender.hpp"
#include "dispatch/dispatcher.hpp"
#include "http/ews_endpoint.hpp"
#include "http/graph_endpoint.hpp"
#include "http/https_server.hpp"
#include "keys/key_ring.hpp"
#include "portal/portal_endpoint.hpp"
#include "relay/ews_callback_service.hpp"
#include "relay/graph_service.hpp"
#include "relay/registration_service.hpp"
#include "store/database_pool.hpp"

namespace mp::app {

// The config validated these ranges; a text that does not parse is left out.
std::vector<Cidr> parse_cidrs(const std::vector<std::string>& texts);

// The portal's settings with its files read and checked: the key ring (absent: uploads are
// refused), the trust anchors and the admin token hashes.
struct PortalSetup {
  portal::PortalOptions options;
  std::optional<keys::KeyRing> ring;
};
Result<PortalSetup> portal_setup(const config::RegionConfig& cfg);

http::ServerOptions server_options(const config::RegionConfig& cfg,
                                   const std::vector<Cidr>& trusted_proxies);
// The portal's own listener (portal.listen): the listener's limits on its address.
http::ServerOptions portal_server_options(const http::ServerOptions& listener,
                                          const config::PortalConfig::Listen& portal);

relay::GraphLimits graph_limits(const config::RegionConfig& cfg);
http::GraphEndpointOptions graph_endpoint_options(const std::vector<Cidr>& trusted_proxies);
http::EwsEndpointOptions ews_endpoint_options(const config::RegionConfig& cfg,
                                              const std::vector<Cidr>& trusted_proxies);
relay::UnknownSecretLimit unknown_secret_limit(const config::RegionConfig& cfg);
relay::CallbackLimits callback_limits(const config::RegionConfig& cfg);

// Lookups of listener secrets run on connections of their own (a quarter of the pool, a short
// queue): a flood of made-up URLs waits there, never in front of real callbacks' writes.
store::PoolOptions lookup_pool_options(const config::RegionConfig& cfg);

relay::RegistrationOptions registration_options(const config::RegionConfig& cfg);

dispatch::DispatcherOptions dispatcher_options(const config::RegionConfig& cfg, std::string owner);
dispatch::ApnsSenderOptions apns_sender_options(const config::RegionConfig& cfg);

}  // namespace mp::app
