// The expiry pass: one database job claims what is due (and marks expired credentials); then
// each claimed warning goes to the log and, if configured, the webhook.
#include "portal/expiry_monitor.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "store/customers.hpp"

namespace mp::portal {
namespace asio = boost::asio;

std::optional<int> warning_threshold(std::int64_t seconds_left) {
  if (seconds_left <= 0) return 0;
  for (int days : {1, 7, 14, 30}) {
    if (seconds_left <= std::int64_t{days} * 86400) return days;
  }
  return std::nullopt;
}

ExpiryMonitor::ExpiryMonitor(store::DatabasePool& pool, std::string region,
                             std::optional<WebhookTarget> webhook, prometheus::Registry& registry)
    : pool_(pool),
      region_(std::move(region)),
      webhook_(std::move(webhook)),
      warnings_(prometheus::BuildCounter()
                    .Name("mailpush_credential_expiry_warnings_total")
                    .Help("Expiry warnings sent by this instance, by threshold in days (0 = "
                          "expired)")
                    .Register(registry)),
      webhook_failures_(prometheus::BuildCounter()
                            .Name("mailpush_expiry_webhook_failures_total")
                            .Help("Expiry warnings the webhook did not accept after retries")
                            .Register(registry)
                            .Add({})) {}

asio::awaitable<Result<std::vector<ExpiryWarning>>> ExpiryMonitor::check() {
  const store::DatabasePool::Job<std::vector<ExpiryWarning>> job =
      [](store::Connection& c) -> Result<std::vector<ExpiryWarning>> {
    auto due = store::list_credentials(c, std::int64_t{30} * 86400);
    if (!due) return std::move(due).error();
    std::vector<ExpiryWarning> claimed;
    const store::Actor actor{"expiry-check", ""};
    for (const auto& k : *due) {
      const auto threshold = warning_threshold(k.seconds_left);
      if (!threshold || k.state != "active") {
        // An expired row was announced when it was marked; nothing more to say.
        continue;
      }
      // Claim, mark and audit row in one transaction per credential: a failure leaves the
      // warning unclaimed for the next pass, and does not stop the other credentials.
      const std::int64_t days =
          k.seconds_left >= 0 ? k.seconds_left / 86400 : -((-k.seconds_left + 86399) / 86400);
      auto step = [&]() -> Result<bool> {
        if (auto st = c.begin(); !st) return std::move(st).error();
        auto mine = store::claim_expiry_warning(c, k.id, *threshold);
        if (!mine || !*mine) return mine;  // another instance (or an earlier pass) sent it
        if (*threshold == 0) {
          if (auto marked = store::mark_credential_expired(c, k.id); !marked)
            return std::move(marked).error();
        }
        const nlohmann::json detail = {{"topic", k.topic},
                                       {"not_after", k.not_after},
                                       {"days_left", days},
                                       {"threshold_days", *threshold},
                                       {"fingerprint", k.fingerprint_hex}};
        if (auto st = store::write_audit(
                c, actor, *threshold == 0 ? "credential.expired" : "credential.expiring",
                k.customer_row_id, detail.dump());
            !st) {
          return std::move(st).error();
        }
        return true;
      };
      auto done = step();
      if (done) {
        if (auto st = c.commit(); !st) done = std::move(st).error();
      }
      if (!done || !*done) {
        if (!c.broken()) (void)c.rollback();
        if (!done) {
          log::warn("credential.expiry_claim_failed",
                    {{"customer", k.customer_id}, {"error", done.error().message}});
          if (c.broken()) break;  // the connection is gone: the next pass tries again
        }
        continue;
      }
      claimed.push_back({k.customer_id, k.topic, k.fingerprint_hex, k.not_after, days, *threshold});
    }
    return claimed;
  };
  auto claimed = co_await pool_.async_run(job, asio::use_awaitable);
  if (!claimed) co_return claimed.error();
  for (const auto& w : *claimed) {
    warnings_.Add({{"threshold", std::to_string(w.threshold)}}).Increment();
    log::warn(w.threshold == 0 ? "credential.expired" : "credential.expiring",
              {{"customer", w.customer_id},
               {"topic", w.topic},
               {"not_after", w.not_after},
               {"days_left", w.days_left},
               {"fingerprint", w.fingerprint},
               {"action", w.threshold == 0
                              ? "no notification is sent for this customer until it uploads a "
                                "renewed certificate"
                              : "the customer must renew the certificate in the portal"}});
    if (!webhook_) continue;
    const std::string body = nlohmann::json{
        {"event", w.threshold == 0 ? "credential.expired" : "credential.expiring"},
        {"region", region_},
        {"customer_id", w.customer_id},
        {"topic", w.topic},
        {"not_after", w.not_after},
        {"days_left", w.days_left},
        {"threshold_days", w.threshold},
        {"fingerprint_sha256",
         w.fingerprint}}.dump();
    auto sent = co_await post_json(*webhook_, body, 3, std::chrono::seconds(10));
    if (!sent) {
      webhook_failures_.Increment();
      log::error("credential.webhook_failed",
                 {{"customer", w.customer_id}, {"error", sent.error().message}});
    }
  }
  co_return std::move(*claimed);
}

}  // namespace mp::portal
