// Loads and validates regions/<name>.json into a RegionConfig, reporting every problem at once.
#include "config/region_config.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/cidr.hpp"
#include "common/text.hpp"

namespace mp::config {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kPasswordRule =
    "passwords are not allowed in a region file; name an environment variable in password_env or "
    "a file in password_file";

bool is_lower(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_lower(c) || is_upper(c) || is_digit(c);
}

bool is_instance_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

bool is_region_name(std::string_view s) {
  return s.size() >= 2 && s.size() <= 32 && is_lower(s[0]) &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return is_lower(c) || is_digit(c) || c == '-'; });
}

bool is_customer_id_prefix(std::string_view s) {
  return s.size() >= 2 && s.size() <= 8 &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_lower(c) || is_digit(c); });
}

// RFC 1123: dot-separated labels of 1-63 letters, digits and inner hyphens; 253 characters at most.
bool is_host_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (std::size_t start = 0; start <= s.size();) {
    const std::size_t dot = std::min(s.find('.', start), s.size());
    const std::string_view label = s.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        !std::all_of(label.begin(), label.end(), [](char c) { return is_alnum(c) || c == '-'; })) {
      return false;
    }
    start = dot + 1;
  }
  return true;
}

// http(s)://host[:port][/path]: the expiry webhook. Nothing secret belongs in it (no userinfo).
bool is_webhook_url(std::string_view s) {
  std::string_view rest;
  if (s.starts_with("https://")) {
    rest = s.substr(8);
  } else if (s.starts_with("http://")) {
    rest = s.substr(7);
  } else {
    return false;
  }
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty() ||
      authority.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  ".-:[]") != std::string_view::npos)
    return false;
  std::string_view host = authority;
  if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos)
      return false;
    host = authority.substr(0, colon);
  }
  if (host.empty()) return false;
  return std::none_of(s.begin(), s.end(), [](char c) { return c == ' ' || is_ascii_control(c); });
}

bool is_ip_literal(std::string_view s) {
  const std::string text(s);
  unsigned char address[16];
  return inet_pton(AF_INET, text.c_str(), address) == 1 ||
         inet_pton(AF_INET6, text.c_str(), address) == 1;
}

bool is_host_or_ip(std::string_view s) {
  return is_host_name(s) || is_ip_literal(s);
}

constexpr std::size_t kMaxDatabaseHosts = 16;

// "host:port", "host", "[v6]:port" or "[v6]" -> Endpoint; the error says what is wrong.
Result<Endpoint> parse_host_port(std::string_view text, std::uint16_t default_port) {
  std::string_view host = text;
  std::string_view port;
  if (text.starts_with("[")) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return make_error(Errc::invalid_argument, "an IPv6 address in [ ] has no closing ]");
    }
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!rest.starts_with(":")) {
        return make_error(Errc::invalid_argument, "expected :port after the ] of an IPv6 address");
      }
      port = rest.substr(1);
      if (port.empty()) return make_error(Errc::invalid_argument, "the port after : is empty");
    }
    const std::string literal(host);
    unsigned char address[16];
    if (inet_pton(AF_INET6, literal.c_str(), address) != 1) {
      return make_error(Errc::invalid_argument, "inside [ ] must be an IPv6 address");
    }
  } else {
    if (const auto colon = text.find(':'); colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) {
        return make_error(Errc::invalid_argument,
                          "an IPv6 address must be written in [ ], e.g. \"[::1]:3306\"");
      }
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (port.empty()) return make_error(Errc::invalid_argument, "the port after : is empty");
    }
    if (!is_host_or_ip(host)) {
      return make_error(Errc::invalid_argument,
                        "must be \"host:port\" with a host name or IP address as host");
    }
  }
  Endpoint out{std::string(host), default_port};
  if (!port.empty()) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
      return make_error(Errc::invalid_argument, "the port must be an integer from 1 to 65535");
    }
    out.port = static_cast<std::uint16_t>(value);
  }
  return out;
}

bool is_database_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

bool is_database_user(std::string_view s) {
  return !s.empty() && s.size() <= 80 && !has_ascii_control(s);
}

bool is_env_name(std::string_view s) {
  return !s.empty() && !is_digit(s[0]) && std::all_of(s.begin(), s.end(), [](char c) {
    return is_upper(c) || is_digit(c) || c == '_';
  });
}

bool is_path(std::string_view s) {
  return !s.empty() && s.find('\0') == std::string_view::npos;
}

bool is_log_level(std::string_view s) {
  return s == "debug" || s == "info" || s == "warn" || s == "error";
}

bool is_password_key(std::string_view key) {
  return key.size() == 8 && std::equal(key.begin(), key.end(), "password", [](char a, char b) {
           return (is_upper(a) ? static_cast<char>(a - 'A' + 'a') : a) == b;
         });
}

std::string system_reason(int error_number) {
  return std::error_code(error_number, std::generic_category()).message();
}

// The offending value as an operator would type it; long values are cut at a UTF-8 boundary.
std::string describe(const json& value) {
  if (value.is_object()) return "an object";
  if (value.is_array()) return "an array";
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 80) {
    std::size_t cut = 77;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut) + "...";
  }
  return text;
}

std::string join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

struct CloseFile {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

// Reads a whole file; the error message is the system's reason only, so callers add the context.
Result<std::string> read_file(const fs::path& path) {
  std::unique_ptr<std::FILE, CloseFile> file(std::fopen(path.c_str(), "rb"));
  if (!file) return make_error(Errc::io, system_reason(errno));
  std::string text;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, n);
  if (std::ferror(file.get())) return make_error(Errc::io, system_reason(errno));
  return text;
}

// nlohmann reports the 1-based byte index of the last character it read.
std::string line_and_column(std::string_view text, std::size_t byte) {
  const std::size_t index = std::min(byte > 0 ? byte - 1 : 0, text.size());
  const std::string_view before = text.substr(0, index);
  const std::size_t line = 1 + std::count(before.begin(), before.end(), '\n');
  const std::size_t last_newline = before.rfind('\n');
  const std::size_t column =
      last_newline == std::string_view::npos ? index + 1 : index - last_newline;
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Drops nlohmann's "[json.exception...] parse error at line L, column C: " prefix.
std::string parser_reason(const json::parse_error& error) {
  const std::string what = error.what();
  const std::size_t column = what.find("column ");
  const std::size_t colon = column == std::string::npos ? column : what.find(": ", column);
  return colon == std::string::npos ? what : what.substr(colon + 2);
}

enum class Need { required, optional };

// A JSON object of the schema with its dotted path; `object` is null when absent or not an object.
struct Section {
  const json* object = nullptr;
  std::string path;
};

// Reads typed fields out of the JSON tree and collects every problem, so one run lists them all.
class FieldReader {
 public:
  FieldReader(std::string source, fs::path base)
      : source_(std::move(source)), base_(std::move(base)) {}

  void problem(std::string_view path, std::string_view what) {
    errors_.push_back(source_ + ": " + (path.empty() ? "" : std::string(path) + ": ") +
                      std::string(what));
  }
  bool ok() const { return errors_.empty(); }
  Error error() const {
    std::string message;
    for (const auto& line : errors_) message += (message.empty() ? "" : "\n") + line;
    return make_error(Errc::invalid_argument, std::move(message));
  }

  // Applies "a.b.c=value": the value is JSON when it parses, else the literal text.
  void apply_override(json& doc, const std::string& text) {
    const std::size_t equals = text.find('=');
    const std::string path = text.substr(0, std::min(equals, text.size()));
    if (equals == std::string::npos || path.empty() || path.front() == '.' || path.back() == '.' ||
        path.find("..") != std::string::npos) {
      problem("--set " + text, "expected <field.path>=<value>, e.g. database.port=3310");
      return;
    }
    const std::string value = text.substr(equals + 1);
    json* node = &doc;
    std::string walked;
    for (std::size_t start = 0;;) {
      const std::size_t dot = std::min(path.find('.', start), path.size());
      const std::string key = path.substr(start, dot - start);
      if (!node->is_object()) {
        problem("--set " + text, walked + " is not an object");
        return;
      }
      node = &(*node)[key];
      walked = join(walked, key);
      if (dot == path.size()) break;
      if (node->is_null()) *node = json::object();
      start = dot + 1;
    }
    *node = json::accept(value) ? json::parse(value) : json(value);
  }

  // Any key named "password", however deep: secrets belong in the environment or a file.
  void reject_passwords(const json& doc) {
    std::vector<std::pair<const json*, std::string>> pending{{&doc, ""}};
    while (!pending.empty()) {
      auto [node, path] = std::move(pending.back());
      pending.pop_back();
      for (const auto& [key, value] : node->items()) {
        if (is_password_key(key)) problem(join(path, key), kPasswordRule);
        if (value.is_object()) pending.emplace_back(&value, join(path, key));
      }
    }
  }

  Section top(const json& doc, std::initializer_list<std::string_view> known) {
    reject_unknown(doc, "", known);
    return Section{&doc, ""};
  }

  Section section(const Section& parent, std::string_view key, Need need,
                  std::initializer_list<std::string_view> known) {
    const json* value = field(parent, key, need);
    const std::string path = join(parent.path, key);
    if (value == nullptr) return Section{nullptr, path};
    if (!value->is_object()) {
      problem(path, "must be an object, got " + describe(*value));
      return Section{nullptr, path};
    }
    reject_unknown(*value, path, known);
    return Section{value, path};
  }

  bool has(const Section& s, std::string_view key) const {
    return s.object != nullptr && s.object->contains(key);
  }

  void read(const Section& s, std::string_view key, Need need, bool (*valid)(std::string_view),
            std::string_view rule, std::string& out) {
    const json* value = field(s, key, need);
    if (value == nullptr) return;
    if (!value->is_string()) {
      problem(join(s.path, key), "must be a string, got " + describe(*value));
    } else if (!valid(value->get_ref<const std::string&>())) {
      problem(join(s.path, key), std::string(rule) + ", got " + describe(*value));
    } else {
      out = value->get<std::string>();
    }
  }

  void read(const Section& s, std::string_view key, Need need, bool (*valid)(std::string_view),
            std::string_view rule, std::optional<std::string>& out) {
    std::string text;
    read(s, key, need, valid, rule, text);
    if (!text.empty()) out = std::move(text);
  }

  // Relative paths resolve against the folder of the region file.
  void read(const Section& s, std::string_view key, Need need, fs::path& out) {
    std::string text;
    read(s, key, need, is_path, "must be a non-empty path", text);
    if (!text.empty()) out = fs::path(text).is_relative() ? base_ / text : fs::path(text);
  }

  void read(const Section& s, std::string_view key, Need need, std::optional<fs::path>& out) {
    fs::path path;
    read(s, key, need, path);
    if (!path.empty()) out = std::move(path);
  }

  template <class T>
  void read(const Section& s, std::string_view key, Need need, std::uint64_t low,
            std::uint64_t high, T& out) {
    const json* value = field(s, key, need);
    if (value == nullptr) return;
    // Non-negative integers parse as unsigned; negatives and fractions are out of range anyway.
    const bool in_range = value->is_number_unsigned() && value->get<std::uint64_t>() >= low &&
                          value->get<std::uint64_t>() <= high;
    if (!in_range) {
      problem(join(s.path, key), "must be an integer from " + std::to_string(low) + " to " +
                                     std::to_string(high) + ", got " + describe(*value));
      return;
    }
    out = T(value->get<std::uint64_t>());
  }

  // An optional array of CIDR ranges, each checked by parse_cidr.
  void read_cidrs(const Section& s, std::string_view key, std::vector<std::string>& out) {
    const json* value = field(s, key, Need::optional);
    if (value == nullptr) return;
    if (!value->is_array()) {
      problem(join(s.path, key), "must be an array of CIDR ranges, got " + describe(*value));
      return;
    }
    for (std::size_t i = 0; i < value->size(); ++i) {
      const json& item = (*value)[i];
      const std::string path = join(s.path, key) + "[" + std::to_string(i) + "]";
      if (!item.is_string()) {
        problem(path, "must be a string, got " + describe(item));
      } else if (auto c = parse_cidr(item.get_ref<const std::string&>()); !c) {
        problem(path, c.error().message);
      } else {
        out.push_back(c->to_string());
      }
    }
  }

  // An optional array of "host:port" strings (host: a host name, an IPv4 address or a bracketed
  // IPv6 address; port 1-65535, 3306 when left out): the database servers in failover order.
  void read_host_ports(const Section& s, std::string_view key, std::uint16_t default_port,
                       std::vector<Endpoint>& out) {
    const json* found = field(s, key, Need::optional);
    if (found == nullptr) return;
    const std::string path = join(s.path, key);
    // A comma-separated string is the same list (handy for --set database.hosts=a:3306,b:3306).
    json split;
    if (found->is_string()) {
      split = json::array();
      const std::string& text = found->get_ref<const std::string&>();
      for (std::size_t start = 0; start <= text.size();) {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        split.push_back(text.substr(start, comma - start));
        start = comma + 1;
      }
    }
    const json* value = found->is_string() ? &split : found;
    if (!value->is_array() || value->empty() || value->size() > kMaxDatabaseHosts) {
      problem(path, "must be an array of 1 to " + std::to_string(kMaxDatabaseHosts) +
                        " \"host:port\" strings, got " + describe(*value));
      return;
    }
    for (std::size_t i = 0; i < value->size(); ++i) {
      const json& item = (*value)[i];
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      if (!item.is_string()) {
        problem(item_path, "must be a \"host:port\" string, got " + describe(item));
        continue;
      }
      auto endpoint = parse_host_port(item.get_ref<const std::string&>(), default_port);
      if (!endpoint) {
        problem(item_path, endpoint.error().message + ", got " + describe(item));
        continue;
      }
      const bool repeated = std::any_of(out.begin(), out.end(), [&](const Endpoint& e) {
        return e.host == endpoint->host && e.port == endpoint->port;
      });
      if (repeated) {
        problem(item_path, "names the same server twice, got " + describe(item));
        continue;
      }
      out.push_back(std::move(*endpoint));
    }
  }

  // An optional object of region name -> host name.
  void read_host_map(const Section& s, std::string_view key, bool (*valid_key)(std::string_view),
                     std::map<std::string, std::string>& out) {
    const json* value = field(s, key, Need::optional);
    if (value == nullptr) return;
    if (!value->is_object()) {
      problem(join(s.path, key),
              "must be an object of region -> host name, got " + describe(*value));
      return;
    }
    for (const auto& [name, host] : value->items()) {
      const std::string path = join(join(s.path, key), name);
      if (!valid_key(name)) {
        problem(path, "is not a region name");
      } else if (!host.is_string() || !is_host_name(host.get_ref<const std::string&>())) {
        problem(path, "must be a host name, got " + describe(host));
      } else {
        out[name] = host.get<std::string>();
      }
    }
  }

  void read(const Section& s, std::string_view key, Need need, bool& out) {
    const json* value = field(s, key, need);
    if (value == nullptr) return;
    if (!value->is_boolean()) {
      problem(join(s.path, key), "must be true or false, got " + describe(*value));
      return;
    }
    out = value->get<bool>();
  }

  void check_readable_file(std::string_view path, const std::optional<fs::path>& file) {
    if (!file || file->empty()) return;
    std::error_code ec;
    const fs::file_status status = fs::status(*file, ec);
    if (ec) {
      problem(path, "cannot read " + file->string() + ": " + ec.message());
    } else if (!fs::is_regular_file(status)) {
      problem(path, file->string() + " is not a regular file");
    } else if (::access(file->c_str(), R_OK) != 0) {
      problem(path, "cannot read " + file->string() + ": " + system_reason(errno));
    }
  }

 private:
  const json* field(const Section& s, std::string_view key, Need need) {
    if (s.object == nullptr) return nullptr;  // the section's own problem is already reported
    const auto it = s.object->find(key);
    if (it != s.object->end()) return &*it;
    if (need == Need::required) problem(join(s.path, key), "missing (required)");
    return nullptr;
  }

  void reject_unknown(const json& object, std::string_view path,
                      std::initializer_list<std::string_view> known) {
    std::string names;
    for (std::string_view name : known) names += (names.empty() ? "" : ", ") + std::string(name);
    for (const auto& [key, value] : object.items()) {
      if (std::find(known.begin(), known.end(), key) == known.end() && !is_password_key(key)) {
        problem(join(path, key), "unknown field (known: " + names + ")");
      }
    }
  }

  std::string source_;
  fs::path base_;
  std::vector<std::string> errors_;
};

void read_endpoint(FieldReader& r, const Section& apns, std::string_view key, Endpoint& out) {
  // Naming an endpoint means pointing somewhere specific, so its host is required; port is not.
  const Section s = r.section(apns, key, Need::optional, {"host", "port"});
  r.read(s, "host", Need::required, is_host_or_ip, "must be a host name or IP address", out.host);
  r.read(s, "port", Need::optional, 1, 65535, out.port);
}

constexpr std::string_view kHostRule =
    "must be a host name (dot-separated labels of letters, digits and inner hyphens)";

void read_listener(FieldReader& r, const Section& top, ListenerConfig& listener) {
  const Section ls =
      r.section(top, "listener", Need::required,
                {"public_host", "bind_address", "port", "tls_cert", "tls_key",
                 "tls_poll_interval_ms", "trusted_proxies", "metrics_allow", "proxy_protocol",
                 "tls_ticket_period_s", "heard_flush_s", "heard_pending_max"});
  r.read(ls, "public_host", Need::required, is_host_name, kHostRule, listener.public_host);
  r.read(ls, "bind_address", Need::required, is_ip_literal,
         "must be an IPv4 or IPv6 address such as 0.0.0.0 or ::", listener.bind_address);
  r.read(ls, "port", Need::required, 0, 65535, listener.port);
  r.read(ls, "tls_cert", Need::required, listener.tls_cert);
  r.read(ls, "tls_key", Need::required, listener.tls_key);
  r.read(ls, "tls_poll_interval_ms", Need::optional, 0, 3600000, listener.tls_poll_interval);
  r.read(ls, "tls_ticket_period_s", Need::optional, 60, 604800, listener.tls_ticket_period);
  r.read(ls, "heard_flush_s", Need::optional, 1, 300, listener.heard_flush);
  r.read(ls, "heard_pending_max", Need::optional, 0, 5000000, listener.heard_pending_max);
  r.read_cidrs(ls, "trusted_proxies", listener.trusted_proxies);
  r.read(ls, "proxy_protocol", Need::optional, listener.proxy_protocol);
  if (listener.proxy_protocol && listener.trusted_proxies.empty()) {
    r.problem(ls.path + ".proxy_protocol",
              "only trusted_proxies may send a PROXY header: name the load balancers there");
  }
  if (ls.object != nullptr && ls.object->contains("metrics_allow")) {
    listener.metrics_allow.clear();  // replaces the loopback default, [] included
    r.read_cidrs(ls, "metrics_allow", listener.metrics_allow);
  }
}

void read_apns(FieldReader& r, const Section& top, ApnsConfig& apns_config) {
  const Section apns = r.section(top, "apns", Need::optional, {"production", "sandbox", "ca_file"});
  read_endpoint(r, apns, "production", apns_config.production);
  read_endpoint(r, apns, "sandbox", apns_config.sandbox);
  r.read(apns, "ca_file", Need::optional, apns_config.ca_file);
}

void read_database(FieldReader& r, const Section& top, DatabaseConfig& db) {
  const Section ds =
      r.section(top, "database", Need::required,
                {"host", "port", "hosts", "socket", "name", "user", "password_env", "password_file",
                 "pool_size", "queue_limit", "connect_timeout_ms", "query_timeout_ms",
                 "migrate_on_start", "batch_max", "batch_window_ms"});
  r.read(ds, "host", Need::optional, is_host_or_ip, "must be a host name or IP address", db.host);
  r.read(ds, "port", Need::optional, 1, 65535, db.port);
  r.read(ds, "socket", Need::optional, db.socket);
  r.read_host_ports(ds, "hosts", 3306, db.hosts);
  if (r.has(ds, "hosts")) {
    if (r.has(ds, "host") || r.has(ds, "port")) {
      r.problem(ds.path, "give either hosts (a failover list) or host and port, not both");
    } else if (r.has(ds, "socket")) {
      r.problem(ds.path, "give either hosts (TCP servers) or socket, not both");
    }
    if (!db.hosts.empty()) {
      db.host = db.hosts.front().host;
      db.port = db.hosts.front().port;
    }
  } else {
    db.hosts = {Endpoint{db.host, db.port}};
  }
  r.read(ds, "name", Need::required, is_database_name,
         "must be 1 to 64 letters, digits or underscores", db.name);
  r.read(ds, "user", Need::required, is_database_user,
         "must be 1 to 80 characters without control characters", db.user);
  r.read(ds, "password_env", Need::optional, is_env_name,
         "must be an environment variable name of capital letters, digits and underscores",
         db.password_env);
  r.read(ds, "password_file", Need::optional, db.password_file);
  if (ds.object != nullptr) {
    const bool env = r.has(ds, "password_env");
    const bool file = r.has(ds, "password_file");
    if (env && file) {
      r.problem(ds.path, "give only one of password_env and password_file, not both");
    } else if (!env && !file) {
      r.problem(ds.path,
                "no password source: name an environment variable in password_env or a file in "
                "password_file");
    }
  }
  r.read(ds, "pool_size", Need::optional, 1, 256, db.pool_size);
  r.read(ds, "queue_limit", Need::optional, 1, 1000000, db.queue_limit);
  r.read(ds, "connect_timeout_ms", Need::optional, 100, 120000, db.connect_timeout);
  r.read(ds, "query_timeout_ms", Need::optional, 100, 600000, db.query_timeout);
  r.read(ds, "migrate_on_start", Need::optional, db.migrate_on_start);
  r.read(ds, "batch_max", Need::optional, 1, 5000, db.batch_max);
  r.read(ds, "batch_window_ms", Need::optional, 0, 50, db.batch_window);
}

void read_limits(FieldReader& r, const Section& top, Limits& limits) {
  const Section lim = r.section(top, "limits", Need::optional,
                                {"max_body_bytes",
                                 "max_header_bytes",
                                 "max_connections",
                                 "handshake_timeout_ms",
                                 "header_timeout_ms",
                                 "request_timeout_ms",
                                 "idle_timeout_ms",
                                 "shutdown_grace_ms",
                                 "max_xml_depth",
                                 "max_xml_elements",
                                 "registration_cache_entries",
                                 "max_connections_per_address",
                                 "connection_burst_per_address",
                                 "connections_per_second_per_address",
                                 "unknown_secret_burst_per_address",
                                 "unknown_secrets_per_second_per_address",
                                 "refuse_untagged_secrets",
                                 "callback_burst_per_registration",
                                 "callbacks_per_second_per_registration",
                                 "callback_burst_per_customer",
                                 "callbacks_per_second_per_customer"});
  r.read(lim, "max_body_bytes", Need::optional, 1024, 67108864, limits.max_body_bytes);
  r.read(lim, "max_header_bytes", Need::optional, 1024, 1048576, limits.max_header_bytes);
  r.read(lim, "max_connections", Need::optional, 1, 1000000, limits.max_connections);
  r.read(lim, "handshake_timeout_ms", Need::optional, 100, 600000, limits.handshake_timeout);
  r.read(lim, "header_timeout_ms", Need::optional, 100, 600000, limits.header_timeout);
  r.read(lim, "request_timeout_ms", Need::optional, 100, 600000, limits.request_timeout);
  r.read(lim, "idle_timeout_ms", Need::optional, 100, 600000, limits.idle_timeout);
  r.read(lim, "shutdown_grace_ms", Need::optional, 0, 600000, limits.shutdown_grace);
  r.read(lim, "max_xml_depth", Need::optional, 8, 256, limits.max_xml_depth);
  r.read(lim, "max_xml_elements", Need::optional, 64, 1000000, limits.max_xml_elements);
  r.read(lim, "registration_cache_entries", Need::optional, 0, 10000000,
         limits.registration_cache_entries);
  r.read(lim, "max_connections_per_address", Need::optional, 0, 1000000,
         limits.max_connections_per_address);
  r.read(lim, "connection_burst_per_address", Need::optional, 1, 1000000,
         limits.connection_burst_per_address);
  r.read(lim, "connections_per_second_per_address", Need::optional, 0, 1000000,
         limits.connections_per_second_per_address);
  r.read(lim, "unknown_secret_burst_per_address", Need::optional, 1, 1000000,
         limits.unknown_secret_burst_per_address);
  r.read(lim, "unknown_secrets_per_second_per_address", Need::optional, 0, 1000000,
         limits.unknown_secrets_per_second_per_address);
  r.read(lim, "refuse_untagged_secrets", Need::optional, limits.refuse_untagged_secrets);
  r.read(lim, "callback_burst_per_registration", Need::optional, 1, 1000000,
         limits.callback_burst_per_registration);
  r.read(lim, "callbacks_per_second_per_registration", Need::optional, 0, 1000000,
         limits.callbacks_per_second_per_registration);
  r.read(lim, "callback_burst_per_customer", Need::optional, 1, 100000000,
         limits.callback_burst_per_customer);
  r.read(lim, "callbacks_per_second_per_customer", Need::optional, 0, 10000000,
         limits.callbacks_per_second_per_customer);
}

void read_portal(FieldReader& r, const Section& top, PortalConfig& portal) {
  const Section ps =
      r.section(top, "portal", Need::optional,
                {"kek_file", "admin_token_file", "trust_anchors", "max_upload_bytes",
                 "failed_attempts_per_15_minutes", "credential_refresh_s",
                 "expiry_check_interval_s", "expiry_webhook_url", "other_regions", "listen"});
  r.read(ps, "kek_file", Need::optional, portal.kek_file);
  r.read(ps, "admin_token_file", Need::optional, portal.admin_token_file);
  r.read(ps, "trust_anchors", Need::optional, portal.trust_anchors);
  r.read(ps, "max_upload_bytes", Need::optional, 4096, 1048576, portal.max_upload_bytes);
  r.read(ps, "failed_attempts_per_15_minutes", Need::optional, 1, 100000,
         portal.failed_attempts_per_15_minutes);
  r.read(ps, "credential_refresh_s", Need::optional, 1, 60, portal.credential_refresh);
  r.read(ps, "expiry_check_interval_s", Need::optional, 1, 86400, portal.expiry_check_interval);
  // The URL is not echoed in the message: a wrong one may carry a token or user:password.
  std::string webhook;
  r.read(ps, "expiry_webhook_url", Need::optional, is_path, "must be a non-empty string", webhook);
  if (!webhook.empty() && !is_webhook_url(webhook)) {
    r.problem(join(ps.path, "expiry_webhook_url"),
              "must be an http:// or https:// URL with a host and no user:password@");
  } else if (!webhook.empty()) {
    portal.expiry_webhook_url = std::move(webhook);
  }
  r.read_host_map(ps, "other_regions", is_region_name, portal.other_regions);
  if (r.has(ps, "listen")) {
    const Section pl = r.section(ps, "listen", Need::optional, {"bind_address", "port"});
    PortalConfig::Listen listen;
    r.read(pl, "bind_address", Need::required, is_ip_literal,
           "must be an IPv4 or IPv6 address such as 0.0.0.0 or ::", listen.bind_address);
    r.read(pl, "port", Need::required, 0, 65535, listen.port);
    portal.listen = listen;
  }
}

void read_registration(FieldReader& r, const Section& top, RegistrationConfig& reg) {
  const Section rs =
      r.section(top, "registration", Need::optional,
                {"secret_file", "status_frequency_minutes", "per_customer_per_minute",
                 "max_per_device", "max_per_customer", "unconfirmed_expiry_hours",
                 "refusals_per_address_per_minute", "other_regions"});
  r.read(rs, "secret_file", Need::optional, reg.secret_file);
  r.read(rs, "status_frequency_minutes", Need::optional, 1, 1440, reg.status_frequency_minutes);
  r.read(rs, "per_customer_per_minute", Need::optional, 1, 1000000, reg.per_customer_per_minute);
  r.read(rs, "max_per_device", Need::optional, 1, 1000, reg.max_per_device);
  r.read(rs, "max_per_customer", Need::optional, 1, 100000000, reg.max_per_customer);
  r.read(rs, "unconfirmed_expiry_hours", Need::optional, 0, 8760, reg.unconfirmed_expiry_hours);
  r.read(rs, "refusals_per_address_per_minute", Need::optional, 1, 1000000,
         reg.refusals_per_address_per_minute);
  r.read_host_map(rs, "other_regions", is_customer_id_prefix, reg.other_regions);
}

void read_dispatch(FieldReader& r, const Section& top, DispatchConfig& dispatch) {
  const Section dsp = r.section(top, "dispatch", Need::optional,
                                {"batch", "ttl_s", "max_attempts", "lease_s", "poll_ms",
                                 "gather_ms", "apns_connections", "pause_probe_s", "instance_id"});
  r.read(dsp, "batch", Need::optional, 1, 10000, dispatch.batch);
  r.read(dsp, "ttl_s", Need::optional, 10, 86400, dispatch.ttl);
  r.read(dsp, "max_attempts", Need::optional, 1, 1000, dispatch.max_attempts);
  r.read(dsp, "lease_s", Need::optional, 2, 3600, dispatch.lease);
  r.read(dsp, "poll_ms", Need::optional, 10, 60000, dispatch.poll);
  r.read(dsp, "gather_ms", Need::optional, 0, 1000, dispatch.gather);
  r.read(dsp, "apns_connections", Need::optional, 1, 64, dispatch.apns_connections);
  r.read(dsp, "pause_probe_s", Need::optional, 1, 86400, dispatch.pause_probe);
  std::string instance;
  r.read(dsp, "instance_id", Need::optional, is_instance_id,
         "must be 1 to 64 letters, digits, dots, hyphens or underscores", instance);
  if (!instance.empty()) dispatch.instance_id = std::move(instance);
}

// Every file the region names exists and is readable (for --check and start-up).
void check_named_files(FieldReader& r, const RegionConfig& cfg) {
  r.check_readable_file("listener.tls_cert", cfg.listener.tls_cert);
  r.check_readable_file("listener.tls_key", cfg.listener.tls_key);
  r.check_readable_file("database.password_file", cfg.database.password_file);
  r.check_readable_file("apns.ca_file", cfg.apns.ca_file);
  r.check_readable_file("portal.kek_file", cfg.portal.kek_file);
  r.check_readable_file("portal.admin_token_file", cfg.portal.admin_token_file);
  r.check_readable_file("portal.trust_anchors", cfg.portal.trust_anchors);
  r.check_readable_file("registration.secret_file", cfg.registration.secret_file);
}

Result<RegionConfig> parse_checked(std::string_view text, const fs::path& source,
                                   const LoadOptions& options) {
  const std::string name = source.string();
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    return make_error(
        Errc::invalid_argument,
        name + ": not valid JSON at " + line_and_column(text, e.byte) + ": " + parser_reason(e));
  }
  if (!doc.is_object()) {
    return make_error(Errc::invalid_argument,
                      name + ": must be a JSON object at the top level, got " + describe(doc));
  }

  FieldReader r(name, source.parent_path());
  for (const auto& text_override : options.overrides) r.apply_override(doc, text_override);
  r.reject_passwords(doc);

  RegionConfig cfg;
  cfg.source = source;
  const Section top = r.top(
      doc, {"region", "customer_id_prefix", "registration_host", "portal_host", "listener", "apns",
            "database", "limits", "portal", "registration", "dispatch", "threads", "log_level"});
  r.read(top, "region", Need::required, is_region_name,
         "must be 2 to 32 lowercase letters, digits or hyphens, starting with a letter",
         cfg.region);
  r.read(top, "customer_id_prefix", Need::required, is_customer_id_prefix,
         "must be 2 to 8 lowercase letters or digits", cfg.customer_id_prefix);
  r.read(top, "registration_host", Need::required, is_host_name, kHostRule, cfg.registration_host);
  r.read(top, "portal_host", Need::required, is_host_name, kHostRule, cfg.portal_host);

  read_listener(r, top, cfg.listener);
  read_apns(r, top, cfg.apns);
  read_database(r, top, cfg.database);
  read_limits(r, top, cfg.limits);
  read_portal(r, top, cfg.portal);
  read_registration(r, top, cfg.registration);
  read_dispatch(r, top, cfg.dispatch);
  r.read(top, "threads", Need::optional, 0, 256, cfg.threads);
  r.read(top, "log_level", Need::optional, is_log_level, "must be one of debug, info, warn, error",
         cfg.log_level);

  if (options.check_files) check_named_files(r, cfg);
  if (!r.ok()) return r.error();
  return cfg;
}

}  // namespace

Result<RegionConfig> load_region(const std::filesystem::path& file, const LoadOptions& options) {
  auto text = read_file(file);
  if (!text) return make_error(Errc::io, file.string() + ": cannot read: " + text.error().message);
  return parse_region(*text, file, options);
}

Result<RegionConfig> parse_region(std::string_view json_text, const std::filesystem::path& source,
                                  const LoadOptions& options) {
  // Start-up code branches on the result; nothing unexpected may escape as an exception.
  try {
    return parse_checked(json_text, source, options);
  } catch (const std::exception& e) {
    return make_error(Errc::internal, source.string() + ": unexpected error: " + e.what());
  }
}

Result<std::string> database_password(const DatabaseConfig& db) {
  if (db.password_env && db.password_file) {
    return make_error(Errc::invalid_argument,
                      "database: give only one of password_env and password_file, not both");
  }
  if (db.password_env) {
    const char* value = std::getenv(db.password_env->c_str());
    if (value == nullptr || *value == '\0') {
      return make_error(Errc::not_found, "database.password_env: environment variable " +
                                             *db.password_env +
                                             (value == nullptr ? " is not set" : " is empty"));
    }
    return std::string(value);
  }
  if (db.password_file) {
    auto text = read_file(*db.password_file);
    if (!text) {
      return make_error(Errc::io, "database.password_file: cannot read " +
                                      db.password_file->string() + ": " + text.error().message);
    }
    std::string& password = *text;
    // Editors and `echo` add a final newline that is not part of the password.
    if (password.ends_with("\r\n")) {
      password.resize(password.size() - 2);
    } else if (password.ends_with('\n')) {
      password.pop_back();
    }
    if (password.empty()) {
      return make_error(Errc::invalid_argument,
                        "database.password_file: " + db.password_file->string() + " is empty");
    }
    return std::move(password);
  }
  return make_error(Errc::invalid_argument,
                    "database: no password source: set password_env or password_file");
}

}  // namespace mp::config
