// graph-sim's rules (see sim_rules.hpp).
#include "sim_rules.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

namespace graph_sim {

using nlohmann::json;

std::string Url::authority() const {
  return port == 443 ? host : host + ":" + std::to_string(port);
}

std::optional<Url> parse_https_url(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  url.remove_prefix(kScheme.size());
  if (url.find('#') != std::string_view::npos) return std::nullopt;
  const auto slash = url.find_first_of("/?");
  const std::string_view authority = url.substr(0, slash);
  Url out;
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (out.target.front() == '?') out.target.insert(out.target.begin(), '/');
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  const auto colon = authority.rfind(':');
  const bool bracketed = authority.front() == '[';
  if (colon != std::string_view::npos && (!bracketed || colon > authority.find(']'))) {
    const std::string_view digits = authority.substr(colon + 1);
    unsigned port = 0;
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc{} || p != digits.data() + digits.size() || port == 0 || port > 65535) {
      return std::nullopt;
    }
    out.port = static_cast<std::uint16_t>(port);
    out.host = std::string(authority.substr(0, colon));
  } else {
    out.host = std::string(authority);
  }
  if (out.host.empty()) return std::nullopt;
  for (const char c : out.host) {
    if (c <= ' ' || c > '~') return std::nullopt;
  }
  return out;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string make_uuid(std::mt19937_64& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  const std::uint64_t a = rng(), b = rng();
  for (int i = 0; i < 32; ++i) {
    int nibble = static_cast<int>(((i < 16 ? a : b) >> ((i % 16) * 4)) & 15);
    if (i == 12) nibble = 4;                 // version 4
    if (i == 16) nibble = 8 | (nibble & 3);  // variant 10xx
    if (i == 8 || i == 12 || i == 16 || i == 20) out += '-';
    out += kHex[nibble];
  }
  return out;
}

std::string make_validation_token(std::mt19937_64& rng) {
  return "Validation: Testing client application reachability for subscription Request-Id: " +
         make_uuid(rng);
}

std::string iso8601(std::chrono::system_clock::time_point t) {
  const auto since = t.time_since_epoch();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  const auto ticks =
      std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count() / 100;
  const std::time_t tt = secs.count();
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%07lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(ticks));
  return buf;
}

bool is_lifecycle_event(std::string_view event) {
  return event == "reauthorizationRequired" || event == "subscriptionRemoved" || event == "missed";
}

bool is_change_type(std::string_view change_type) {
  return change_type == "created" || change_type == "updated" || change_type == "deleted";
}

namespace {

json common_fields(const Subscription& s) {
  json item = {{"subscriptionId", s.id}, {"subscriptionExpirationDateTime", s.expiration}};
  if (!s.client_state.empty()) item["clientState"] = s.client_state;
  if (!s.tenant_id.empty()) item["tenantId"] = s.tenant_id;
  return item;
}

}  // namespace

std::string notification_body(const Subscription& s, const std::vector<Change>& changes) {
  json value = json::array();
  const std::string user = s.user_id.empty() ? "00000000-0000-0000-0000-000000000000" : s.user_id;
  for (const auto& c : changes) {
    json item = common_fields(s);
    const std::string resource = "Users/" + user + "/Messages/" + c.message_id;
    item["changeType"] = c.change_type;
    item["resource"] = resource;
    item["resourceData"] = {{"@odata.type", "#Microsoft.Graph.Message"},
                            {"@odata.id", resource},
                            {"@odata.etag", "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\""},
                            {"id", c.message_id}};
    value.push_back(std::move(item));
  }
  return json{{"value", std::move(value)}}.dump();
}

std::string lifecycle_body(const Subscription& s, std::string_view event) {
  json item = common_fields(s);
  item["lifecycleEvent"] = event;
  return json{{"value", json::array({std::move(item)})}}.dump();
}

milliseconds retry_delay(unsigned attempt, milliseconds base, milliseconds cap,
                         std::optional<std::chrono::seconds> retry_after, std::mt19937_64& rng) {
  const unsigned doublings = std::min(attempt < 2 ? 0u : attempt - 2, 30u);
  const double nominal =
      std::min(static_cast<double>(base.count()) * std::ldexp(1.0, static_cast<int>(doublings)),
               static_cast<double>(cap.count()));
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  auto delay = milliseconds(
      static_cast<std::int64_t>(std::min(nominal * jitter(rng), static_cast<double>(cap.count()))));
  if (retry_after) {
    delay = std::max(delay, std::min<milliseconds>(*retry_after, cap));
  }
  return delay;
}

std::string_view to_string(EndpointClass c) {
  switch (c) {
    case EndpointClass::ok:
      return "ok";
    case EndpointClass::slow:
      return "slow";
    case EndpointClass::drop:
      return "drop";
  }
  return "ok";
}

void EndpointClassifier::expire(Clock::time_point now) {
  while (!samples_.empty() &&
         (now - samples_.front().at > limits_.window || samples_.size() > kMaxSamples)) {
    over_slow_ -= samples_.front().slow ? 1 : 0;
    over_drop_ -= samples_.front().drop ? 1 : 0;
    samples_.pop_front();
  }
}

void EndpointClassifier::record(Clock::time_point now, milliseconds answer) {
  const bool slow = answer > limits_.slow_after;
  const bool drop = answer >= limits_.drop_after;
  samples_.push_back({now, slow, drop});
  over_slow_ += slow ? 1 : 0;
  over_drop_ += drop ? 1 : 0;
  expire(now);
  if (samples_.size() < limits_.min_answers) return;
  const auto n = static_cast<double>(samples_.size());
  EndpointClass judged = EndpointClass::ok;
  if (static_cast<double>(over_drop_) > limits_.drop_share * n) {
    judged = EndpointClass::drop;
  } else if (static_cast<double>(over_slow_) > limits_.slow_share * n) {
    judged = EndpointClass::slow;
  }
  // A worse judgement starts (or restarts) a penalty; a better one waits for it to end.
  if (judged != EndpointClass::ok && (judged >= state_ || now >= state_until_)) {
    state_ = judged;
    state_until_ = now + limits_.penalty;
  }
}

EndpointClass EndpointClassifier::state(Clock::time_point now) const {
  return now < state_until_ ? state_ : EndpointClass::ok;
}

Percentiles percentiles(std::vector<std::uint32_t> samples_us) {
  Percentiles p;
  if (samples_us.empty()) return p;
  std::sort(samples_us.begin(), samples_us.end());
  const auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(samples_us.size() - 1) + 0.5);
    return static_cast<double>(samples_us[i]) / 1000.0;
  };
  p.p50_ms = at(0.50);
  p.p99_ms = at(0.99);
  p.max_ms = static_cast<double>(samples_us.back()) / 1000.0;
  return p;
}

}  // namespace graph_sim
