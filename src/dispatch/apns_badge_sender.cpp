// The dispatcher's APNs connection pools.
#include "dispatch/apns_badge_sender.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "common/log.hpp"

namespace mp::dispatch {
namespace asio = boost::asio;

ApnsBadgeSender::ApnsBadgeSender(asio::io_context& ioc, ApnsSenderOptions options,
                                 prometheus::Registry& registry)
    : ioc_(ioc), options_(std::move(options)), metrics_(registry) {}

asio::awaitable<apns::SendResult> ApnsBadgeSender::send(
    const std::string& customer, const apns::ApnsCredential& credential,
    const apns::BadgeNotification& notification) {
  if (closed_) {
    apns::SendResult closed;
    closed.outcome = apns::SendOutcome::retry_exhausted;
    closed.reason = "PoolClosed";
    co_return closed;
  }
  const auto pool = pool_for(customer, credential);
  co_return co_await pool->send(notification);
}

std::shared_ptr<apns::ApnsConnectionPool> ApnsBadgeSender::pool_for(
    const std::string& customer, const apns::ApnsCredential& credential) {
  const std::string key = customer + "/" + apns::environment_name(credential.environment);
  auto it = pools_.find(key);
  if (it != pools_.end()) {
    if (it->second->credential().fingerprint == credential.fingerprint) return it->second;
    // Renewed: the old pool finishes what it has and closes; new sends use the new credential.
    log::info("dispatch.credential_switched",
              {{"customer", customer},
               {"environment", apns::environment_name(credential.environment)},
               {"fingerprint", credential.fingerprint.substr(0, 16)}});
    auto old = it->second;
    asio::co_spawn(
        ioc_, [old]() -> asio::awaitable<void> { co_await old->close(); }, asio::detached);
    pools_.erase(it);
  }
  apns::PoolOptions po = options_.pool;
  const auto& endpoint = credential.environment == apns::ApnsEnvironment::production
                             ? options_.production
                             : options_.sandbox;
  po.connection.host = endpoint.host;
  po.connection.port = endpoint.port;
  auto pool = apns::ApnsConnectionPool::create(ioc_.get_executor(), credential, po, &metrics_);
  pools_.emplace(key, pool);
  return pool;
}

asio::awaitable<void> ApnsBadgeSender::close() {
  closed_ = true;
  auto pools = std::move(pools_);
  pools_.clear();
  for (auto& [key, pool] : pools) co_await pool->close();
}

}  // namespace mp::dispatch
