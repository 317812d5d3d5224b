// A credential tried against APNs through a pool of one connection.
#include "apns/credential_probe.hpp"

#include <boost/asio/this_coro.hpp>

namespace mp::apns {
namespace asio = boost::asio;

asio::awaitable<CredentialProbe> probe_credential(ApnsCredential credential, ProbeTarget target,
                                                  std::optional<std::string> topic) {
  PoolOptions po;
  po.connection.host = target.host;
  po.connection.port = target.port;
  po.connection.connect_timeout = target.timeout;
  po.connection.request_timeout = target.timeout;
  po.connection.ping_interval = std::chrono::milliseconds(0);
  po.max_connections = 1;
  po.max_attempts = 1;
  po.max_unprocessed_resends = 1;
  po.send_deadline = target.timeout;
  po.close_grace = std::chrono::milliseconds(500);
  auto pool =
      ApnsConnectionPool::create(co_await asio::this_coro::executor, std::move(credential), po);
  CredentialProbe out;
  const Status connected = co_await pool->connect();
  if (!connected) {
    out.handshake_error = connected.error().message;
  } else if (topic) {
    BadgeNotification probe;
    probe.device_token_hex = std::string(kProbeToken);
    probe.topic = *topic;
    probe.badge = 0;
    probe.priority = 5;
    out.answer = co_await pool->send(probe);
  }
  co_await pool->close();
  co_return out;
}

}  // namespace mp::apns
