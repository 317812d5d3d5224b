// BadgeSender over apns::ApnsConnectionPool: one pool per customer and environment, made when
// its first badge is sent, replaced when the customer's credential changes (renewal).
#pragma once

#include <prometheus/registry.h>

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <string>

#include "apns/connection_pool.hpp"
#include "config/region_config.hpp"
#include "dispatch/badge_sender.hpp"

namespace mp::dispatch {

struct ApnsSenderOptions {
  config::Endpoint production{"api.push.apple.com", 443};
  config::Endpoint sandbox{"api.sandbox.push.apple.com", 443};
  apns::PoolOptions pool;  // per credential; connection host/port are set per environment
};

class ApnsBadgeSender final : public BadgeSender {
 public:
  // The pools' metrics (`mailpush_apns_*`) are registered in `registry`.
  ApnsBadgeSender(boost::asio::io_context& ioc, ApnsSenderOptions options,
                  prometheus::Registry& registry);
  ApnsBadgeSender(const ApnsBadgeSender&) = delete;
  ApnsBadgeSender& operator=(const ApnsBadgeSender&) = delete;

  boost::asio::awaitable<apns::SendResult> send(
      const std::string& customer, const apns::ApnsCredential& credential,
      const apns::BadgeNotification& notification) override;
  boost::asio::awaitable<void> close() override;

 private:
  std::shared_ptr<apns::ApnsConnectionPool> pool_for(const std::string& customer,
                                                     const apns::ApnsCredential& credential);

  boost::asio::io_context& ioc_;
  ApnsSenderOptions options_;
  apns::ApnsMetrics metrics_;
  std::map<std::string, std::shared_ptr<apns::ApnsConnectionPool>> pools_;  // customer/env
  bool closed_ = false;
};

}  // namespace mp::dispatch
