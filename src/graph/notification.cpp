// Graph notification bodies and validation tokens: limits first (size, nesting), then
// nlohmann_json, then the documented shape, field by field.
#include "graph/notification.hpp"

#include <nlohmann/json.hpp>

#include "common/text.hpp"

namespace mp::graph {
namespace {

using nlohmann::json;

ParseError refuse(Refusal refusal, std::string message) {
  return ParseError{refusal, std::move(message)};
}

// The deepest nesting of objects and arrays, counted on the bytes (strings skipped) before the
// parser builds anything, so a body of ten thousand '[' costs a scan and no allocation.
std::size_t nesting_depth(std::string_view body, std::size_t stop_above) {
  std::size_t depth = 0;
  std::size_t deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > stop_above) return deepest;
      }
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// A string member of `item`: absent is "", another type refuses the body. Strings are printable
// ASCII: what Graph puts in these fields (GUIDs, base64 ids, the app's clientState).
std::optional<ParseError> read_string(json& item, const char* name, std::size_t index,
                                      const ParseLimits& limits, std::string& out) {
  const auto it = item.find(name);
  if (it == item.end() || it->is_null()) return std::nullopt;
  // Built only for a refusal: a good body's fields cost no message.
  const auto where = [&] { return "value[" + std::to_string(index) + "]." + name; };
  if (!it->is_string()) {
    return refuse(Refusal::wrong_shape,
                  where() + " must be a string, not " + std::string(it->type_name()));
  }
  auto& s = it->get_ref<std::string&>();
  if (s.size() > limits.max_string) {
    return refuse(Refusal::value_too_long,
                  where() + " is over " + std::to_string(limits.max_string) + " bytes");
  }
  if (!is_printable_ascii(std::string_view(s))) {
    return refuse(Refusal::wrong_shape, where() + " must be printable ASCII");
  }
  out = std::move(s);  // the document is the parser's own, read once
  return std::nullopt;
}

ChangeType change_type_of(std::string_view s) {
  if (s == "created") return ChangeType::created;
  if (s == "updated") return ChangeType::updated;
  if (s == "deleted") return ChangeType::deleted;
  return ChangeType::other;
}

LifecycleEvent lifecycle_of(std::string_view s) {
  if (s == "reauthorizationRequired") return LifecycleEvent::reauthorization_required;
  if (s == "subscriptionRemoved") return LifecycleEvent::subscription_removed;
  if (s == "missed") return LifecycleEvent::missed;
  return LifecycleEvent::other;
}

std::variant<Item, ParseError> read_item(json& value, std::size_t index,
                                         const ParseLimits& limits) {
  const auto where = [index] { return "value[" + std::to_string(index) + "]"; };
  if (!value.is_object()) {
    return refuse(Refusal::wrong_shape, where() + " must be an object");
  }
  Item item;
  std::string change, lifecycle, expires, resource;
  for (const auto& [name, target] :
       {std::pair<const char*, std::string*>{"subscriptionId", &item.subscription_id},
        {"clientState", &item.client_state},
        {"tenantId", &item.tenant_id},
        {"changeType", &change},
        {"lifecycleEvent", &lifecycle},
        {"subscriptionExpirationDateTime", &expires},
        {"resource", &resource}}) {
    if (auto e = read_string(value, name, index, limits, *target)) return std::move(*e);
  }
  if (item.subscription_id.empty()) {
    return refuse(Refusal::wrong_shape, where() + ".subscriptionId is missing");
  }
  if (item.subscription_id.size() > limits.max_subscription_id) {
    return refuse(Refusal::value_too_long, where() + ".subscriptionId is over " +
                                               std::to_string(limits.max_subscription_id) +
                                               " bytes");
  }
  if (auto rd = value.find("resourceData"); rd != value.end() && !rd->is_null()) {
    if (!rd->is_object()) {
      return refuse(Refusal::wrong_shape, where() + ".resourceData must be an object");
    }
    if (auto e = read_string(*rd, "id", index, limits, item.message_id)) return std::move(*e);
  }
  if (item.message_id.empty()) item.message_id = message_id_of_resource(resource);
  if (!lifecycle.empty()) {
    item.lifecycle = lifecycle_of(lifecycle);
  } else if (change.empty()) {
    return refuse(Refusal::wrong_shape, where() + " has neither changeType nor lifecycleEvent");
  } else {
    // "created,updated" never comes in one item; anything but one known type is `other`.
    item.change = change_type_of(change);
  }
  if (!expires.empty()) item.expires_at = parse_datetime(expires);
  return item;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int number(std::string_view s) {
  int n = 0;
  for (const char c : s) n = n * 10 + (c - '0');
  return n;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

const char* change_type_name(ChangeType type) noexcept {
  switch (type) {
    case ChangeType::created:
      return "created";
    case ChangeType::updated:
      return "updated";
    case ChangeType::deleted:
      return "deleted";
    case ChangeType::other:
      break;
  }
  return "other";
}

const char* lifecycle_event_name(LifecycleEvent event) noexcept {
  switch (event) {
    case LifecycleEvent::none:
      return "none";
    case LifecycleEvent::reauthorization_required:
      return "reauthorizationRequired";
    case LifecycleEvent::subscription_removed:
      return "subscriptionRemoved";
    case LifecycleEvent::missed:
      return "missed";
    case LifecycleEvent::other:
      break;
  }
  return "other";
}

const char* refusal_name(Refusal refusal) noexcept {
  switch (refusal) {
    case Refusal::too_large:
      return "too_large";
    case Refusal::too_deep:
      return "too_deep";
    case Refusal::invalid_json:
      return "invalid_json";
    case Refusal::wrong_shape:
      return "wrong_shape";
    case Refusal::value_too_long:
      return "value_too_long";
  }
  return "invalid_json";
}

std::variant<Notifications, ParseError> parse_notifications(std::string_view body,
                                                            const ParseLimits& limits) {
  if (body.size() > limits.max_body_bytes) {
    return refuse(Refusal::too_large,
                  "the body is over " + std::to_string(limits.max_body_bytes) + " bytes");
  }
  if (nesting_depth(body, limits.max_depth) > limits.max_depth) {
    return refuse(Refusal::too_deep,
                  "the body nests deeper than " + std::to_string(limits.max_depth) + " levels");
  }
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    // nlohmann's messages quote the input: only the offset is given.
    return refuse(Refusal::invalid_json, "the body is not valid JSON in UTF-8 (problem at byte " +
                                             std::to_string(e.byte) + ")");
  } catch (const json::exception&) {
    return refuse(Refusal::invalid_json, "the body holds a number out of range");
  }
  if (!doc.is_object()) return refuse(Refusal::wrong_shape, "the body must be a JSON object");
  auto value = doc.find("value");
  if (value == doc.end() || !value->is_array()) {
    return refuse(Refusal::wrong_shape, "the body must hold an array 'value'");
  }
  if (value->size() > limits.max_items) {
    return refuse(Refusal::wrong_shape,
                  "'value' holds over " + std::to_string(limits.max_items) + " notifications");
  }
  Notifications out;
  out.items.reserve(value->size());
  for (std::size_t i = 0; i < value->size(); ++i) {
    auto item = read_item((*value)[i], i, limits);
    if (auto* e = std::get_if<ParseError>(&item)) return std::move(*e);
    out.items.push_back(std::move(std::get<Item>(item)));
  }
  return out;
}

std::optional<std::int64_t> parse_datetime(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't') ||
      t[13] != ':' || t[16] != ':')
    return std::nullopt;
  const std::string_view parts[] = {t.substr(0, 4),  t.substr(5, 2),  t.substr(8, 2),
                                    t.substr(11, 2), t.substr(14, 2), t.substr(17, 2)};
  for (const auto p : parts) {
    if (!all_digits(p)) return std::nullopt;
  }
  const int year = number(parts[0]), month = number(parts[1]), day = number(parts[2]);
  const int hour = number(parts[3]), minute = number(parts[4]), second = number(parts[5]);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  std::string_view rest = t.substr(19);
  if (!rest.empty() && rest.front() == '.') {
    std::size_t n = 1;
    while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
    if (n == 1) return std::nullopt;
    rest.remove_prefix(n);
  }
  std::int64_t offset = 0;
  if (rest == "Z" || rest == "z") {
    offset = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
             all_digits(rest.substr(1, 2)) && all_digits(rest.substr(4, 2))) {
    offset = (number(rest.substr(1, 2)) * 3600 + number(rest.substr(4, 2)) * 60) *
             (rest[0] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  const std::int64_t days =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  return days * 86400 + hour * 3600 + minute * 60 + second - offset;
}

std::string message_id_of_resource(std::string_view resource) {
  // me/messages('{id}') and Users('…')/Messages('{id}')
  if (!resource.empty() && resource.back() == ')') {
    const auto open = resource.rfind("('");
    if (open != std::string_view::npos && resource.size() >= open + 4 &&
        resource[resource.size() - 2] == '\'') {
      return std::string(resource.substr(open + 2, resource.size() - open - 4));
    }
    return {};
  }
  // Users/{user}/Messages/{id}
  const auto slash = resource.rfind('/');
  if (slash == std::string_view::npos || slash < 9) return {};
  const std::string_view collection = resource.substr(0, slash);
  constexpr std::string_view kMessages = "/messages";
  if (collection.size() < kMessages.size()) return {};
  const std::string_view tail = collection.substr(collection.size() - kMessages.size());
  for (std::size_t i = 0; i < kMessages.size(); ++i) {
    char c = tail[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kMessages[i]) return {};
  }
  return std::string(resource.substr(slash + 1));
}

std::optional<std::variant<std::string, TokenError>> validation_token(std::string_view target,
                                                                      std::size_t max_bytes) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  constexpr std::string_view kName = "validationToken=";
  std::optional<std::string_view> raw;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.substr(0, kName.size()) == kName) {
      raw = pair.substr(kName.size());
      break;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  if (!raw) return std::nullopt;
  // Percent-decoding at most triples the length; a raw token over 3 x the limit is over it.
  if (raw->size() > 3 * max_bytes) {
    return TokenError{"validationToken is over " + std::to_string(max_bytes) + " bytes"};
  }
  std::string token;
  token.reserve(raw->size());
  for (std::size_t i = 0; i < raw->size(); ++i) {
    const char c = (*raw)[i];
    if (c == '+') {
      token += ' ';
    } else if (c == '%') {
      const int hi = i + 2 < raw->size() ? hex_value((*raw)[i + 1]) : -1;
      const int lo = hi >= 0 ? hex_value((*raw)[i + 2]) : -1;
      if (lo < 0) return TokenError{"validationToken holds a malformed percent escape"};
      token += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      token += c;
    }
  }
  if (token.empty()) return TokenError{"validationToken is empty"};
  if (token.size() > max_bytes) {
    return TokenError{"validationToken is over " + std::to_string(max_bytes) + " bytes"};
  }
  if (!is_valid_utf8(token)) return TokenError{"validationToken is not UTF-8"};
  for (const char c : token) {
    if (is_ascii_control(c) || c == '<' || c == '>') {
      return TokenError{"validationToken holds a control character or markup"};
    }
  }
  return token;
}

}  // namespace mp::graph
