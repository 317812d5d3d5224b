// JSON patching and printing of the simulator's fault settings.
#include "faults.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace apns_sim {
namespace {

using nlohmann::json;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::uint32_t count_field(const json& v, const char* key) {
  if (!v.is_number_unsigned())
    throw std::invalid_argument(std::string(key) + ": want a count >= 0");
  return v.get<std::uint32_t>();
}

double rate_field(const json& v, const char* key) {
  if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1) {
    throw std::invalid_argument(std::string(key) + ": want a number in 0..1");
  }
  return v.get<double>();
}

std::vector<std::string> string_list(const json& v, const char* key) {
  if (!v.is_array()) throw std::invalid_argument(std::string(key) + ": want an array of strings");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) throw std::invalid_argument(std::string(key) + ": want strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::string fingerprint_form(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c != ':') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

}  // namespace

void apply_fault_patch(FaultSettings& f, const json& patch) {
  if (!patch.is_object()) throw std::invalid_argument("faults: want a JSON object");
  for (const auto& [key, v] : patch.items()) {
    if (key == "unregistered") {
      // ["token", ...] (timestamp = now) or [{"token": "...", "timestamp": ms}, ...]; replaces.
      if (!v.is_array()) throw std::invalid_argument("unregistered: want an array");
      std::map<std::string, std::int64_t> tokens;
      for (const auto& e : v) {
        if (e.is_string()) {
          tokens[lower(e.get<std::string>())] = now_ms();
        } else if (e.is_object() && e.contains("token") && e["token"].is_string()) {
          const auto ts = e.value("timestamp", json(now_ms()));
          if (!ts.is_number_integer()) throw std::invalid_argument("unregistered: bad timestamp");
          tokens[lower(e["token"].get<std::string>())] = ts.get<std::int64_t>();
        } else {
          throw std::invalid_argument("unregistered: want tokens or {token, timestamp}");
        }
      }
      f.unregistered = std::move(tokens);
    } else if (key == "bad_device_tokens") {
      if (!v.is_array()) throw std::invalid_argument("bad_device_tokens: want an array");
      std::set<std::string> tokens;
      for (const auto& e : v) {
        if (!e.is_string()) throw std::invalid_argument("bad_device_tokens: want tokens");
        tokens.insert(lower(e.get<std::string>()));
      }
      f.bad_device_tokens = std::move(tokens);
    } else if (key == "error_rates") {
      if (!v.is_object()) throw std::invalid_argument("error_rates: want {\"429\": 0.1, ...}");
      for (const auto& [status, rate] : v.items()) {
        if (status == "429") {
          f.rate_429 = rate_field(rate, "error_rates.429");
        } else if (status == "500") {
          f.rate_500 = rate_field(rate, "error_rates.500");
        } else if (status == "503") {
          f.rate_503 = rate_field(rate, "error_rates.503");
        } else {
          throw std::invalid_argument("error_rates: only 429, 500 and 503");
        }
      }
      if (f.rate_429 + f.rate_500 + f.rate_503 > 1) {
        throw std::invalid_argument("error_rates: the rates add up to more than 1");
      }
    } else if (key == "next_statuses") {
      if (!v.is_array()) throw std::invalid_argument("next_statuses: want an array of statuses");
      std::vector<int> statuses;
      for (const auto& e : v) {
        if (!e.is_number_integer() || (e != 429 && e != 500 && e != 503)) {
          throw std::invalid_argument("next_statuses: only 429, 500 and 503");
        }
        statuses.push_back(e.get<int>());
      }
      f.next_statuses = std::move(statuses);
    } else if (key == "goaway_after_streams") {
      f.goaway_after_streams = count_field(v, "goaway_after_streams");
    } else if (key == "close_after_streams") {
      f.close_after_streams = count_field(v, "close_after_streams");
    } else if (key == "max_concurrent_streams") {
      f.max_concurrent_streams = count_field(v, "max_concurrent_streams");
    } else if (key == "latency_ms") {
      f.latency = std::chrono::milliseconds(count_field(v, "latency_ms"));
    } else if (key == "bad_certificate") {
      f.bad_certificate = string_list(v, "bad_certificate");
    } else if (key == "revoked") {
      f.revoked = string_list(v, "revoked");
    } else if (key == "silent") {
      if (!v.is_boolean()) throw std::invalid_argument("silent: want true or false");
      f.silent = v.get<bool>();
    } else {
      throw std::invalid_argument("unknown fault '" + key + "'");
    }
  }
}

json to_json(const FaultSettings& f) {
  json unregistered = json::array();
  for (const auto& [token, ts] : f.unregistered) {
    unregistered.push_back({{"token", token}, {"timestamp", ts}});
  }
  return {
      {"unregistered", unregistered},
      {"bad_device_tokens", f.bad_device_tokens},
      {"error_rates", {{"429", f.rate_429}, {"500", f.rate_500}, {"503", f.rate_503}}},
      {"next_statuses", f.next_statuses},
      {"goaway_after_streams", f.goaway_after_streams},
      {"close_after_streams", f.close_after_streams},
      {"max_concurrent_streams", f.max_concurrent_streams},
      {"latency_ms", f.latency.count()},
      {"bad_certificate", f.bad_certificate},
      {"revoked", f.revoked},
      {"silent", f.silent},
  };
}

bool names_certificate(const std::string& entry, const std::string& sha256_hex,
                       const std::string& subject) {
  return entry == subject || (!sha256_hex.empty() && fingerprint_form(entry) == sha256_hex);
}

bool names_any_certificate(const std::vector<std::string>& entries, const std::string& sha256_hex,
                           const std::string& subject) {
  return std::any_of(entries.begin(), entries.end(), [&](const std::string& e) {
    return names_certificate(e, sha256_hex, subject);
  });
}

}  // namespace apns_sim
