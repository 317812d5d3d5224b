// graph-sim's Graph (see simulator.hpp).
#include "simulator.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <stdexcept>

#include "common/log.hpp"

namespace graph_sim {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxAnswerSamples = 200'000;
constexpr std::size_t kMaxChangesPerBatch = 1'000;  // Graph's own batches stay far below
constexpr int kMaxExpirationMinutes = 10'080;       // mail subscriptions: 7 days at most
constexpr std::size_t kMaxClientState = 128;
const std::string kJson = "application/json; charset=utf-8";

double to_ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A string member: `fallback` when absent, an error when of another type or too long.
std::string text(const json& j, const char* key, std::size_t max, std::string fallback = {}) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw std::invalid_argument(std::string(key) + ": want a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max) {
    throw std::invalid_argument(std::string(key) + ": longer than " + std::to_string(max));
  }
  return s;
}

// A whole-number member within [lo, hi]; `fallback` when absent.
std::int64_t number(const json& j, const char* key, std::int64_t lo, std::int64_t hi,
                    std::int64_t fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() || it->get<std::int64_t>() < lo || it->get<std::int64_t>() > hi) {
    throw std::invalid_argument(std::string(key) + ": want a whole number in " +
                                std::to_string(lo) + ".." + std::to_string(hi));
  }
  return it->get<std::int64_t>();
}

json graph_error(std::string code, std::string message) {
  return {{"error", {{"code", std::move(code)}, {"message", std::move(message)}}}};
}

void count_answer(std::map<std::string, std::uint64_t>& answers, const Answer& a) {
  ++answers[a.status != 0 ? std::to_string(a.status) : a.timed_out ? "timeout" : "error"];
}

}  // namespace

// A load run's own figures.
struct Simulator::RunFigures {
  std::uint64_t batches = 0, items = 0, delivered = 0, given_up = 0, dropped = 0;
  std::uint64_t attempts = 0, retries = 0, over_slow = 0, over_drop = 0, in_flight = 0;
  std::map<std::string, std::uint64_t> answers;
  std::vector<std::uint32_t> answer_us, lag_us;  // lag: from the due time to the send (open loop)
};

json Delivery::to_json() const {
  json j = {{"seq", seq},
            {"subscription_id", subscription_id},
            {"kind", kind},
            {"outcome", outcome},
            {"attempts", attempts},
            {"items", items},
            {"last_status", last_status},
            {"answer_ms", answer_ms}};
  if (!last_error.empty()) j["last_error"] = last_error;
  return j;
}

Simulator::Simulator(asio::io_context& io, HttpsClient& client, SimOptions options,
                     std::uint64_t seed)
    : io_(io), client_(client), options_(options), rng_(seed) {}

EndpointClassifier& Simulator::classifier(const Url& url) {
  return endpoints_.try_emplace(url.authority(), options_.classifier).first->second;
}

asio::awaitable<Simulator::Validation> Simulator::validate(const Url& url) {
  const std::string token = make_validation_token(rng_);
  Url u = url;
  u.target += (u.target.find('?') == std::string::npos ? "?" : "&");
  u.target += "validationToken=" + percent_encode(token);
  const std::string type = "text/plain; charset=utf-8";
  const std::string empty;
  const Answer a = co_await client_.post(u, type, empty, options_.validation_timeout);
  Validation v;
  v.answer_ms = to_ms(a.elapsed);
  if (totals_.validation_us.size() < kMaxAnswerSamples) {
    totals_.validation_us.push_back(static_cast<std::uint32_t>(
        std::min<double>(v.answer_ms * 1000.0, static_cast<double>(UINT32_MAX))));
  }
  if (a.status == 0) {
    v.reason = a.timed_out ? "no answer within " +
                                 std::to_string(options_.validation_timeout.count()) + " ms"
                           : a.error;
  } else if (a.status != 200) {
    v.reason = "HTTP " + std::to_string(a.status) + " (200 wanted)";
  } else if (a.content_type.rfind("text/plain", 0) != 0) {
    v.reason = "Content-Type is not text/plain";
  } else if (a.body != token) {
    v.reason = "the body is not the decoded validationToken";
  } else {
    v.ok = true;
  }
  ++(v.ok ? totals_.validations_ok : totals_.validations_failed);
  co_return v;
}

asio::awaitable<Reply> Simulator::create(const json& request) {
  if (!request.is_object()) co_return Reply{400, graph_error("BadRequest", "want a JSON object")};
  Entry e;
  try {
    e.sub.change_type = text(request, "changeType", 64);
    e.sub.resource = text(request, "resource", 512);
    e.sub.notification_url = text(request, "notificationUrl", 2048);
    e.sub.lifecycle_url = text(request, "lifecycleNotificationUrl", 2048);
    e.sub.client_state = text(request, "clientState", kMaxClientState);
    e.sub.tenant_id = text(request, "tenantId", 64);
    e.sub.user_id = text(request, "userId", 64);
    e.sub.label = text(request, "label", 256);
    const auto minutes =
        number(request, "expirationMinutes", 1, kMaxExpirationMinutes, kMaxExpirationMinutes);
    e.sub.expiration =
        text(request, "expirationDateTime", 40,
             iso8601(std::chrono::system_clock::now() + std::chrono::minutes(minutes)));
  } catch (const std::invalid_argument& err) {
    co_return Reply{400, graph_error("InvalidRequest", err.what())};
  }
  if (e.sub.change_type.empty() || e.sub.resource.empty()) {
    co_return Reply{400, graph_error("InvalidRequest", "changeType and resource are required")};
  }
  for (std::string_view rest = e.sub.change_type; !rest.empty();) {
    const auto comma = rest.find(',');
    if (!is_change_type(rest.substr(0, comma))) {
      co_return Reply{400, graph_error("InvalidRequest", "changeType: created,updated,deleted")};
    }
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  const auto notify = parse_https_url(e.sub.notification_url);
  if (!notify) {
    co_return Reply{400, graph_error("InvalidRequest", "notificationUrl must be an https URL")};
  }
  e.notify = *notify;
  e.lifecycle = *notify;
  if (!e.sub.lifecycle_url.empty()) {
    const auto lifecycle = parse_https_url(e.sub.lifecycle_url);
    if (!lifecycle) {
      co_return Reply{
          400, graph_error("InvalidRequest", "lifecycleNotificationUrl must be an https URL")};
    }
    e.lifecycle = *lifecycle;
  }
  if (subs_.size() >= options_.max_subscriptions) {
    co_return Reply{403, graph_error("ExtensionError", "too many subscriptions")};
  }
  // Graph validates each URL before it creates the subscription.
  const Url notify_url = e.notify;
  const Validation v = co_await validate(notify_url);
  if (!v.ok) {
    mp::log::info("graph_sim.validation_failed", {{"url", "notificationUrl"}, {"why", v.reason}});
    json body = graph_error("ValidationError",
                            "Subscription validation request failed. Notification endpoint must "
                            "respond with 200 OK to validation request.");
    body["error"]["detail"] = "notificationUrl: " + v.reason;
    co_return Reply{400, body};
  }
  if (!e.sub.lifecycle_url.empty()) {
    const Url lifecycle_url = e.lifecycle;
    const Validation lv = co_await validate(lifecycle_url);
    if (!lv.ok) {
      mp::log::info("graph_sim.validation_failed",
                    {{"url", "lifecycleNotificationUrl"}, {"why", lv.reason}});
      json body = graph_error("ValidationError",
                              "Subscription validation request failed. Lifecycle notification "
                              "endpoint must respond with 200 OK to validation request.");
      body["error"]["detail"] = "lifecycleNotificationUrl: " + lv.reason;
      co_return Reply{400, body};
    }
  }
  do {
    e.sub.id = make_uuid(rng_);
  } while (subs_.count(e.sub.id) != 0);
  json out = {{"id", e.sub.id},
              {"resource", e.sub.resource},
              {"changeType", e.sub.change_type},
              {"notificationUrl", e.sub.notification_url},
              {"expirationDateTime", e.sub.expiration},
              {"validation_ms", v.answer_ms}};
  if (!e.sub.lifecycle_url.empty()) out["lifecycleNotificationUrl"] = e.sub.lifecycle_url;
  if (!e.sub.label.empty()) out["label"] = e.sub.label;
  subs_.emplace(e.sub.id, std::move(e));
  co_return Reply{201, out};
}

asio::awaitable<Reply> Simulator::create_many(const json& request) {
  if (!request.is_object() || !request.contains("subscriptions") ||
      !request["subscriptions"].is_array()) {
    co_return Reply{400, {{"error", "want {\"subscriptions\":[…]}"}}};
  }
  std::int64_t concurrency = 16;
  try {
    concurrency = number(request, "concurrency", 1, 256, 16);
  } catch (const std::invalid_argument& err) {
    co_return Reply{400, {{"error", err.what()}}};
  }
  auto items = std::make_shared<json>(request["subscriptions"]);
  auto created = std::make_shared<std::vector<std::string>>(items->size());
  auto failed = std::make_shared<json>(json::array());
  auto next = std::make_shared<std::size_t>(0);
  auto running = std::make_shared<std::int64_t>(0);
  asio::steady_timer done(io_, Clock::time_point::max());
  // `concurrency` workers take the next item each until none is left.
  for (std::int64_t w = 0; w < concurrency; ++w) {
    ++*running;
    asio::co_spawn(
        io_,
        [this, items, created, failed, next, running, &done]() -> asio::awaitable<void> {
          while (*next < items->size()) {
            const std::size_t i = (*next)++;
            const json one = std::move((*items)[i]);
            const Reply r = co_await create(one);
            if (r.status == 201) {
              (*created)[i] = r.body["id"].get<std::string>();
            } else {
              failed->push_back({{"index", i}, {"status", r.status}, {"error", r.body}});
            }
          }
          if (--*running == 0) done.cancel();
        },
        asio::detached);
  }
  co_await done.async_wait(nothrow);
  co_return Reply{200, {{"created", *created}, {"failed", *failed}}};
}

Reply Simulator::remove(const std::string& id) {
  if (subs_.erase(id) == 0) {
    return {404, graph_error("ResourceNotFound", "no such subscription")};
  }
  return {204, nullptr};
}

Reply Simulator::list() const {
  json value = json::array();
  for (const auto& [id, e] : subs_) {
    json s = {{"id", id},
              {"resource", e.sub.resource},
              {"changeType", e.sub.change_type},
              {"notificationUrl", e.sub.notification_url},
              {"expirationDateTime", e.sub.expiration},
              {"items_sent", e.items_sent},
              {"items_accepted", e.items_accepted},
              {"lifecycle_sent", e.lifecycle_sent},
              {"lifecycle_accepted", e.lifecycle_accepted}};
    if (!e.sub.label.empty()) s["label"] = e.sub.label;
    value.push_back(std::move(s));
  }
  return {200, {{"value", std::move(value)}}};
}

void Simulator::keep(const Delivery& d) {
  kept_.push_back(d);
  while (kept_.size() > options_.deliveries_kept) kept_.pop_front();
}

asio::awaitable<Delivery> Simulator::deliver(const std::string& id, const std::string& kind,
                                             const Url& url, const std::string& body,
                                             std::size_t items, RunFigures* run) {
  Delivery d;
  d.seq = next_seq_++;
  d.subscription_id = id;
  d.kind = kind;
  d.items = items;
  ++totals_.in_flight;
  if (run) ++run->in_flight;
  asio::steady_timer timer(io_);
  EndpointClass judged = classifier(url).state(Clock::now());
  if (judged == EndpointClass::slow) {  // Graph holds a slow endpoint's notifications back
    timer.expires_after(options_.slow_delay);
    co_await timer.async_wait(nothrow);
    judged = classifier(url).state(Clock::now());
  }
  if (judged == EndpointClass::drop) {
    d.outcome = "dropped";
  } else {
    for (unsigned attempt = 1;; ++attempt) {
      if (subs_.count(id) == 0) {  // deleted meanwhile: Graph stops sending
        d.outcome = "removed";
        break;
      }
      const Answer a = co_await client_.post(url, kJson, body, options_.answer_timeout);
      const auto now = Clock::now();
      d.attempts = attempt;
      if (attempt == 1) d.first_sent = now - a.elapsed;
      d.last_status = a.status;
      d.last_error = a.error;
      d.answer_ms = to_ms(a.elapsed);
      const auto answered = a.timed_out ? options_.classifier.drop_after
                                        : std::chrono::duration_cast<milliseconds>(a.elapsed);
      const bool slow = answered > options_.classifier.slow_after;
      const bool drop = answered >= options_.classifier.drop_after;
      ++totals_.attempts;
      count_answer(totals_.answers, a);
      totals_.over_slow += slow;
      totals_.over_drop += drop;
      const auto us = static_cast<std::uint32_t>(
          std::min<double>(to_ms(a.elapsed) * 1000.0, static_cast<double>(UINT32_MAX)));
      if (totals_.answer_us.size() < kMaxAnswerSamples) totals_.answer_us.push_back(us);
      if (run) {
        ++run->attempts;
        count_answer(run->answers, a);
        run->over_slow += slow;
        run->over_drop += drop;
        if (run->answer_us.size() < kMaxAnswerSamples * 5) run->answer_us.push_back(us);
      }
      if (a.status != 0 || a.timed_out) classifier(url).record(now, answered);
      if (a.ok()) {
        d.outcome = "delivered";
        break;
      }
      if (attempt >= options_.max_attempts) {
        d.outcome = "given_up";
        break;
      }
      ++totals_.retries;
      if (run) ++run->retries;
      timer.expires_after(
          retry_delay(attempt + 1, options_.retry_base, options_.retry_cap, a.retry_after, rng_));
      co_await timer.async_wait(nothrow);
    }
  }
  --totals_.in_flight;
  if (run) --run->in_flight;
  if (d.outcome == "delivered") ++totals_.delivered;
  if (d.outcome == "given_up") ++totals_.given_up;
  if (d.outcome == "dropped") ++totals_.dropped;
  if (run) {
    run->delivered += d.outcome == "delivered";
    run->given_up += d.outcome == "given_up";
    run->dropped += d.outcome == "dropped";
  }
  if (const auto it = subs_.find(id); it != subs_.end()) {
    const std::uint64_t accepted = d.outcome == "delivered" ? items : 0;
    if (kind == "notification") {
      it->second.items_accepted += accepted;
    } else {
      it->second.lifecycle_accepted += accepted;
    }
  }
  if (d.outcome != "delivered") {
    mp::log::info("graph_sim.not_delivered", {{"subscription", id},
                                              {"kind", kind},
                                              {"outcome", d.outcome},
                                              {"attempts", d.attempts},
                                              {"last_status", d.last_status},
                                              {"last_error", d.last_error}});
  }
  keep(d);
  co_return d;
}

asio::awaitable<Reply> Simulator::notify(const std::string& id, const json& request) {
  auto it = subs_.find(id);
  if (it == subs_.end())
    co_return Reply{404, graph_error("ResourceNotFound", "no such subscription")};
  std::vector<Change> changes;
  try {
    if (!request.is_object() || !request.contains("changes") || !request["changes"].is_array() ||
        request["changes"].empty() || request["changes"].size() > kMaxChangesPerBatch) {
      throw std::invalid_argument("want {\"changes\":[{\"changeType\":…,\"id\":…}, …]} (1..1000)");
    }
    for (const auto& c : request["changes"]) {
      if (!c.is_object()) throw std::invalid_argument("changes: want objects");
      Change change{text(c, "changeType", 16), text(c, "id", 512)};
      if (!is_change_type(change.change_type)) {
        throw std::invalid_argument("changeType: created, updated or deleted");
      }
      if (change.message_id.empty()) {
        change.message_id = "AAMkAGGraphSim" + std::to_string(next_message_++);
      }
      changes.push_back(std::move(change));
    }
  } catch (const std::invalid_argument& err) {
    co_return Reply{400, {{"error", err.what()}}};
  }
  Entry& e = it->second;
  e.items_sent += changes.size();
  const Url url = e.notify;
  const std::string kind = "notification";
  const std::string body = notification_body(e.sub, changes);
  const Delivery d = co_await deliver(id, kind, url, body, changes.size(), nullptr);
  co_return Reply{200, d.to_json()};
}

asio::awaitable<Reply> Simulator::lifecycle(const std::string& id, const json& request) {
  auto it = subs_.find(id);
  if (it == subs_.end())
    co_return Reply{404, graph_error("ResourceNotFound", "no such subscription")};
  std::string event;
  try {
    event = request.is_object() ? text(request, "lifecycleEvent", 64) : "";
  } catch (const std::invalid_argument& err) {
    co_return Reply{400, {{"error", err.what()}}};
  }
  if (!is_lifecycle_event(event)) {
    co_return Reply{400,
                    {{"error",
                      "lifecycleEvent: reauthorizationRequired, "
                      "subscriptionRemoved or missed"}}};
  }
  Entry& e = it->second;
  ++e.lifecycle_sent;
  const Url url = e.lifecycle;
  const std::string kind = "lifecycle";
  const std::string body = lifecycle_body(e.sub, event);
  const Delivery d = co_await deliver(id, kind, url, body, 1, nullptr);
  json out = d.to_json();
  // Graph has removed the subscription when it says so: it sends nothing more for it.
  if (event == "subscriptionRemoved" && subs_.erase(id) != 0) out["removed"] = true;
  co_return Reply{200, out};
}

asio::awaitable<Reply> Simulator::load(const json& request) {
  if (load_running_) co_return Reply{409, {{"error", "a load run is going"}}};
  std::int64_t rate = 0, seconds = 0, per_batch = 1, drain = 30, concurrency = 0, among = 0;
  std::string change_type, mode;
  try {
    if (!request.is_object()) throw std::invalid_argument("want a JSON object");
    mode = text(request, "mode", 16, "open");
    if (mode != "open" && mode != "closed") throw std::invalid_argument("mode: open|closed");
    rate = number(request, "rate", 1, 100'000, 100);
    seconds = number(request, "seconds", 1, 600, 10);
    per_batch = number(request, "items_per_batch", 1, 100, 1);
    drain = number(request, "drain_seconds", 0, 600, 30);
    concurrency = number(request, "concurrency", 1, 4096, 64);
    among = number(request, "subscriptions", 0, 100'000'000, 0);
    change_type = text(request, "changeType", 16, "created");
    if (!is_change_type(change_type)) {
      throw std::invalid_argument("changeType: created|updated|deleted");
    }
  } catch (const std::invalid_argument& err) {
    co_return Reply{400, {{"error", err.what()}}};
  }
  if (subs_.empty()) co_return Reply{409, {{"error", "no subscription to send to"}}};
  load_running_ = true;
  std::vector<std::string> ids;
  ids.reserve(subs_.size());
  for (const auto& [id, e] : subs_) {
    if (among > 0 && static_cast<std::int64_t>(ids.size()) >= among) break;
    ids.push_back(id);  // "subscriptions": N sends to the first N only (0: all)
  }
  auto run = std::make_shared<RunFigures>();
  std::uniform_int_distribution<std::size_t> pick(0, ids.size() - 1);
  // The next batch: a random subscription, `per_batch` new messages.
  struct Batch {
    std::string id;
    Url url;
    std::string body;
    std::size_t items = 0;
  };
  const auto next_batch = [&]() -> std::optional<Batch> {
    const std::string& id = ids[pick(rng_)];
    const auto it = subs_.find(id);
    if (it == subs_.end()) return std::nullopt;  // deleted during the run
    Entry& e = it->second;
    std::vector<Change> changes;
    for (std::int64_t i = 0; i < per_batch; ++i) {
      changes.push_back({change_type, "AAMkAGGraphSim" + std::to_string(next_message_++)});
    }
    e.items_sent += changes.size();
    ++run->batches;
    run->items += changes.size();
    return Batch{id, e.notify, notification_body(e.sub, changes), changes.size()};
  };
  const double cpu0 = cpu_seconds();
  const auto start = Clock::now();
  asio::steady_timer pacer(io_);
  mp::log::info("graph_sim.load_started", {{"mode", mode},
                                           {"rate", rate},
                                           {"seconds", seconds},
                                           {"concurrency", concurrency},
                                           {"subscriptions", ids.size()}});
  if (mode == "closed") {
    // `concurrency` senders, each sending its next batch as soon as the last one ended.
    const auto end = start + std::chrono::seconds(seconds);
    auto senders = std::make_shared<std::int64_t>(concurrency);
    for (std::int64_t w = 0; w < concurrency; ++w) {
      asio::co_spawn(
          io_,
          [this, run, senders, end, &next_batch]() -> asio::awaitable<void> {
            const std::string kind = "notification";
            while (Clock::now() < end) {
              const auto batch = next_batch();
              if (!batch) break;
              co_await deliver(batch->id, kind, batch->url, batch->body, batch->items, run.get());
            }
            --*senders;
          },
          asio::detached);
    }
    while (*senders > 0) {
      pacer.expires_after(std::chrono::milliseconds(20));
      co_await pacer.async_wait(nothrow);
    }
  } else {
    const auto total = static_cast<std::uint64_t>(rate * seconds);
    const auto interval = std::chrono::duration<double>(1.0 / static_cast<double>(rate));
    for (std::uint64_t k = 0; k < total; ++k) {
      const auto due =
          start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(k));
      if (due > Clock::now()) {
        pacer.expires_at(due);
        co_await pacer.async_wait(nothrow);
      }
      auto batch = next_batch();
      if (!batch) continue;
      asio::co_spawn(
          io_,
          [this, run, due, b = std::move(*batch)]() -> asio::awaitable<void> {
            const std::string kind = "notification";
            const Delivery d = co_await deliver(b.id, kind, b.url, b.body, b.items, run.get());
            // From the due time to the send: graph-sim's own queue, waiting for a connection
            // (all of them busy: the endpoint answers slower than the offered rate).
            if (d.first_sent != Clock::time_point{} && run->lag_us.size() < kMaxAnswerSamples * 5) {
              run->lag_us.push_back(static_cast<std::uint32_t>(std::clamp<std::int64_t>(
                  std::chrono::duration_cast<std::chrono::microseconds>(d.first_sent - due).count(),
                  0, UINT32_MAX)));
            }
          },
          asio::detached);
    }
  }
  const auto sent_by = Clock::now();
  // The drain: every delivery ends (delivered, retried out, or given up) or the limit passes.
  const auto drain_until = sent_by + std::chrono::seconds(drain);
  while (run->in_flight > 0 && Clock::now() < drain_until) {
    pacer.expires_after(std::chrono::milliseconds(20));
    co_await pacer.async_wait(nothrow);
  }
  const double cpu = cpu_seconds() - cpu0;
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  load_running_ = false;
  const auto answer = percentiles(run->answer_us);
  const auto lag = percentiles(run->lag_us);
  const double sending_s = std::chrono::duration<double>(sent_by - start).count();
  json report = {
      {"mode", mode},
      {"batches", run->batches},
      {"items", run->items},
      {"offered_per_s", static_cast<double>(run->batches) / std::max(sending_s, 1e-9)},
      {"delivered", run->delivered},
      {"delivered_per_s", static_cast<double>(run->delivered) / std::max(elapsed_s, 1e-9)},
      {"given_up", run->given_up},
      {"dropped", run->dropped},
      {"still_in_flight", run->in_flight},
      {"attempts", run->attempts},
      {"retries", run->retries},
      {"answers", run->answers},
      {"answer_ms", {{"p50", answer.p50_ms}, {"p99", answer.p99_ms}, {"max", answer.max_ms}}},
      {"queued_ms", {{"p50", lag.p50_ms}, {"p99", lag.p99_ms}, {"max", lag.max_ms}}},
      {"over_3s", run->over_slow},
      {"over_10s", run->over_drop},
      {"over_3s_share",
       run->attempts ? static_cast<double>(run->over_slow) / static_cast<double>(run->attempts)
                     : 0.0},
      {"graph_sim_cpu_s", cpu},
      {"graph_sim_cpu_us_per_batch",
       run->batches ? cpu * 1e6 / static_cast<double>(run->batches) : 0.0}};
  json classes = json::object();
  for (const auto& [authority, c] : endpoints_) {
    classes[authority] = std::string(to_string(c.state(Clock::now())));
  }
  report["endpoints"] = classes;
  mp::log::info("graph_sim.load_done", report);
  co_return Reply{200, report};
}

json Simulator::stats() const {
  const auto p = percentiles(totals_.answer_us);
  const auto pv = percentiles(totals_.validation_us);
  json endpoints = json::object();
  for (const auto& [authority, c] : endpoints_) {
    endpoints[authority] = {{"class", std::string(to_string(c.state(Clock::now())))},
                            {"answers_in_window", c.answers()},
                            {"over_3s_in_window", c.over_slow()},
                            {"over_10s_in_window", c.over_drop()}};
  }
  return {
      {"subscriptions", subs_.size()},
      {"validations",
       {{"ok", totals_.validations_ok},
        {"failed", totals_.validations_failed},
        {"answer_ms", {{"p50", pv.p50_ms}, {"p99", pv.p99_ms}, {"max", pv.max_ms}}}}},
      {"deliveries",
       {{"delivered", totals_.delivered},
        {"given_up", totals_.given_up},
        {"dropped", totals_.dropped},
        {"in_flight", totals_.in_flight}}},
      {"attempts", totals_.attempts},
      {"retries", totals_.retries},
      {"answers", totals_.answers},
      {"answer_ms", {{"p50", p.p50_ms}, {"p99", p.p99_ms}, {"max", p.max_ms}}},
      {"over_3s", totals_.over_slow},
      {"over_10s", totals_.over_drop},
      {"endpoints", endpoints},
      {"connections", {{"open", client_.open_connections()}, {"made", client_.connections_made()}}},
      {"load_running", load_running_},
      {"cpu_s", cpu_seconds()}};
}

json Simulator::deliveries(std::uint64_t since, std::size_t limit) const {
  json records = json::array();
  for (const auto& d : kept_) {
    if (d.seq <= since) continue;
    if (records.size() >= limit) break;
    records.push_back(d.to_json());
  }
  return {{"records", records}, {"next_seq", next_seq_}};
}

void Simulator::reset() {
  const auto in_flight = totals_.in_flight;
  totals_ = {};
  totals_.in_flight = in_flight;
  kept_.clear();
  endpoints_.clear();
}

}  // namespace graph_sim
