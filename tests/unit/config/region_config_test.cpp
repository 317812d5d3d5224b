// Tests for region file loading: shipped regions, every kind of bad file, overrides, passwords.
#include "config/region_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mp::config {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fresh folder under the system temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("mailpush-config-test-" + std::to_string(::getpid()) +
                                         "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

  fs::path write(const fs::path& relative, const std::string& content) const {
    const fs::path file = path_ / relative;
    fs::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }

 private:
  fs::path path_;
};

// The smallest valid region file; each test breaks one thing in it.
json minimal() {
  return {
      {"region", "test"},
      {"customer_id_prefix", "tst"},
      {"registration_host", "register.test.example"},
      {"portal_host", "portal.test.example"},
      {"listener",
       {{"public_host", "listener.test.example"},
        {"bind_address", "127.0.0.1"},
        {"port", 0},
        {"tls_cert", "tls/listener.crt"},
        {"tls_key", "tls/listener.key"}}},
      {"database",
       {{"name", "mailpush_test"}, {"user", "mailpush"}, {"password_env", "MP_TEST_DB_PASSWORD"}}},
  };
}

constexpr const char* kSource = "regions/test.json";

Result<RegionConfig> parse(const json& doc, std::vector<std::string> overrides = {}) {
  LoadOptions options;
  options.check_files = false;
  options.overrides = std::move(overrides);
  return parse_region(doc.dump(), kSource, options);
}

// The error message, or a marker that makes an unexpected success visible in the failure output.
template <class T>
std::string error_of(const Result<T>& result) {
  return result.ok() ? "(no error)" : result.error().message;
}

std::string error_of(const json& doc, std::vector<std::string> overrides = {}) {
  return error_of(parse(doc, std::move(overrides)));
}

TEST(RegionConfigShipped, DevLoadsWithLocalSettings) {
  const fs::path file = fs::path(MAILPUSH_SOURCE_DIR) / "regions" / "dev.json";
  LoadOptions options;
  options.check_files = false;
  const auto cfg = load_region(file, options);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  const fs::path base = file.parent_path();
  EXPECT_EQ(cfg->source, file);
  EXPECT_EQ(cfg->region, "dev");
  EXPECT_EQ(cfg->customer_id_prefix, "dev");
  EXPECT_EQ(cfg->registration_host, "localhost");
  EXPECT_EQ(cfg->portal_host, "localhost");
  EXPECT_EQ(cfg->listener.public_host, "localhost");
  EXPECT_EQ(cfg->listener.bind_address, "127.0.0.1");
  EXPECT_EQ(cfg->listener.port, 8443);
  EXPECT_EQ(cfg->listener.tls_cert, base / "../var/dev/tls/listener.crt");
  EXPECT_EQ(cfg->listener.tls_key, base / "../var/dev/tls/listener.key");
  EXPECT_EQ(cfg->apns.production.host, "127.0.0.1");
  EXPECT_EQ(cfg->apns.production.port, 2197);
  EXPECT_EQ(cfg->apns.sandbox.host, "127.0.0.1");
  EXPECT_EQ(cfg->apns.sandbox.port, 2197);
  EXPECT_EQ(cfg->apns.ca_file, base / "../var/dev/apns-certs/apple-ca.crt");  // dev's apns-sim
  EXPECT_EQ(cfg->database.host, "127.0.0.1");
  EXPECT_EQ(cfg->database.port, 3307);
  EXPECT_EQ(cfg->database.socket, base / "../var/dev/mariadb/mysqld.sock");
  EXPECT_EQ(cfg->database.name, "mailpush_dev");
  EXPECT_EQ(cfg->database.user, "mailpush");
  EXPECT_FALSE(cfg->database.password_env);
  EXPECT_EQ(cfg->database.password_file, base / "../var/dev/mariadb/mailpush.password");
  EXPECT_EQ(cfg->database.pool_size, 4u);
  EXPECT_TRUE(cfg->database.migrate_on_start);
  EXPECT_EQ(cfg->threads, 0u);
  EXPECT_EQ(cfg->log_level, "info");
}

TEST(RegionConfigShipped, ProductionRegionsLoadWithTheirHosts) {
  const Limits defaults;
  for (const auto& [region, prefix] : std::vector<std::pair<std::string, std::string>>{
           {"us-east-1", "use1"}, {"eu-west-1", "euw1"}, {"ap-southeast-1", "apse1"}}) {
    SCOPED_TRACE(region);
    LoadOptions options;
    options.check_files = false;
    const auto cfg =
        load_region(fs::path(MAILPUSH_SOURCE_DIR) / "regions" / (region + ".json"), options);
    ASSERT_TRUE(cfg.ok()) << error_of(cfg);
    EXPECT_EQ(cfg->region, region);
    EXPECT_EQ(cfg->customer_id_prefix, prefix);
    EXPECT_EQ(cfg->registration_host, "register." + prefix + ".mailpush.example");
    EXPECT_EQ(cfg->portal_host, "portal." + prefix + ".mailpush.example");
    EXPECT_EQ(cfg->listener.public_host, "listener." + prefix + ".mailpush.example");
    EXPECT_EQ(cfg->listener.bind_address, "0.0.0.0");
    EXPECT_EQ(cfg->listener.port, 443);
    EXPECT_EQ(cfg->listener.tls_cert, "/etc/mailpush/tls/listener.crt");
    EXPECT_EQ(cfg->listener.tls_key, "/etc/mailpush/tls/listener.key");
    EXPECT_EQ(cfg->apns.production.host, "api.push.apple.com");
    EXPECT_EQ(cfg->apns.production.port, 443);
    EXPECT_EQ(cfg->apns.sandbox.host, "api.sandbox.push.apple.com");
    EXPECT_EQ(cfg->apns.sandbox.port, 443);
    EXPECT_EQ(cfg->database.host, "db." + prefix + ".internal");
    EXPECT_EQ(cfg->database.port, 3306);
    EXPECT_FALSE(cfg->database.socket);
    EXPECT_EQ(cfg->database.name, "mailpush");
    EXPECT_EQ(cfg->database.user, "mailpush");
    EXPECT_EQ(cfg->database.password_env, "MAILPUSH_DB_PASSWORD");
    EXPECT_FALSE(cfg->database.password_file);
    EXPECT_EQ(cfg->database.pool_size, 16u);
    EXPECT_FALSE(cfg->database.migrate_on_start);
    EXPECT_EQ(cfg->limits.max_body_bytes, defaults.max_body_bytes);
    EXPECT_EQ(cfg->limits.max_header_bytes, defaults.max_header_bytes);
    EXPECT_EQ(cfg->limits.max_connections, defaults.max_connections);
    EXPECT_EQ(cfg->limits.handshake_timeout, defaults.handshake_timeout);
    EXPECT_EQ(cfg->limits.request_timeout, defaults.request_timeout);
    EXPECT_EQ(cfg->limits.idle_timeout, defaults.idle_timeout);
    EXPECT_EQ(cfg->limits.shutdown_grace, defaults.shutdown_grace);
    EXPECT_EQ(cfg->threads, 0u);
    EXPECT_EQ(cfg->log_level, "info");
  }
}

TEST(RegionConfigParse, MinimalFileTakesDefaultsFromTheHeader) {
  const auto cfg = parse(minimal());
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  const ApnsConfig apns;
  const DatabaseConfig db;
  const Limits limits;
  EXPECT_EQ(cfg->source, kSource);
  EXPECT_EQ(cfg->apns.production.host, apns.production.host);
  EXPECT_EQ(cfg->apns.sandbox.host, apns.sandbox.host);
  EXPECT_EQ(cfg->database.host, db.host);
  EXPECT_EQ(cfg->database.port, db.port);
  EXPECT_EQ(cfg->database.pool_size, db.pool_size);
  EXPECT_EQ(cfg->database.queue_limit, db.queue_limit);
  EXPECT_EQ(cfg->database.connect_timeout, db.connect_timeout);
  EXPECT_EQ(cfg->database.query_timeout, db.query_timeout);
  EXPECT_EQ(cfg->database.migrate_on_start, db.migrate_on_start);
  EXPECT_EQ(cfg->limits.max_body_bytes, limits.max_body_bytes);
  EXPECT_EQ(cfg->limits.shutdown_grace, limits.shutdown_grace);
  EXPECT_EQ(cfg->threads, 0u);
  EXPECT_EQ(cfg->log_level, "info");
}

TEST(RegionConfigParse, ListenerTlsPollIntervalHasADefaultAndARange) {
  const auto defaults = parse(minimal());
  ASSERT_TRUE(defaults.ok()) << error_of(defaults);
  EXPECT_EQ(defaults->listener.tls_poll_interval, std::chrono::milliseconds(5000));
  json doc = minimal();
  doc["listener"]["tls_poll_interval_ms"] = 0;  // SIGHUP only
  const auto off = parse(doc);
  ASSERT_TRUE(off.ok()) << error_of(off);
  EXPECT_EQ(off->listener.tls_poll_interval, std::chrono::milliseconds(0));
  doc["listener"]["tls_poll_interval_ms"] = 3600001;
  const auto too_long = parse(doc);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(error_of(too_long).find("listener.tls_poll_interval_ms"), std::string::npos)
      << error_of(too_long);
}

TEST(RegionConfigParse, HeartbeatWritesHaveDefaultsAndRanges) {
  const auto defaults = parse(minimal());
  ASSERT_TRUE(defaults.ok()) << error_of(defaults);
  EXPECT_EQ(defaults->listener.heard_flush, std::chrono::seconds(30));
  EXPECT_EQ(defaults->listener.heard_pending_max, 200000u);
  json doc = minimal();
  doc["listener"]["heard_flush_s"] = 5;
  doc["listener"]["heard_pending_max"] = 0;  // every heartbeat written before OK
  const auto set = parse(doc);
  ASSERT_TRUE(set.ok()) << error_of(set);
  EXPECT_EQ(set->listener.heard_flush, std::chrono::seconds(5));
  EXPECT_EQ(set->listener.heard_pending_max, 0u);
  doc["listener"]["heard_flush_s"] = 0;
  doc["listener"]["heard_pending_max"] = 5000001;
  EXPECT_EQ(error_of(doc),
            "regions/test.json: listener.heard_flush_s: must be an integer from 1 to 300, got 0\n"
            "regions/test.json: listener.heard_pending_max: must be an integer from 0 to "
            "5000000, got 5000001");
}

TEST(RegionConfigParse, CommitWindowsHaveDefaultsAndRanges) {
  const auto defaults = parse(minimal());
  ASSERT_TRUE(defaults.ok()) << error_of(defaults);
  EXPECT_EQ(defaults->database.batch_window, std::chrono::milliseconds(5));
  EXPECT_EQ(defaults->dispatch.gather, std::chrono::milliseconds(0));
  json doc = minimal();
  doc["database"]["batch_window_ms"] = 0;  // a lone callback commits at once
  doc["dispatch"] = {{"gather_ms", 10}};
  const auto set = parse(doc);
  ASSERT_TRUE(set.ok()) << error_of(set);
  EXPECT_EQ(set->database.batch_window, std::chrono::milliseconds(0));
  EXPECT_EQ(set->dispatch.gather, std::chrono::milliseconds(10));
  doc["database"]["batch_window_ms"] = 51;
  doc["dispatch"]["gather_ms"] = 1001;
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database.batch_window_ms: must be an integer from 0 to 50, got 51\n"
            "regions/test.json: dispatch.gather_ms: must be an integer from 0 to 1000, got 1001");
}

TEST(RegionConfigParse, ReadsEveryOptionalField) {
  json doc = minimal();
  doc["apns"] = {{"production", {{"host", "apns.test.example"}, {"port", 2197}}},
                 {"sandbox", {{"host", "::1"}}},
                 {"ca_file", "/etc/ssl/apple.pem"}};
  doc["database"].update({{"host", "db.test.internal"},
                          {"port", 3310},
                          {"socket", "/run/mysqld.sock"},
                          {"pool_size", 8},
                          {"queue_limit", 500},
                          {"connect_timeout_ms", 100},
                          {"query_timeout_ms", 600000},
                          {"migrate_on_start", true}});
  doc["limits"] = {{"max_body_bytes", 2048},     {"max_header_bytes", 4096},
                   {"max_connections", 7},       {"handshake_timeout_ms", 1000},
                   {"request_timeout_ms", 2000}, {"idle_timeout_ms", 3000},
                   {"shutdown_grace_ms", 0}};
  doc["threads"] = 256;
  doc["log_level"] = "debug";
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_EQ(cfg->apns.production.host, "apns.test.example");
  EXPECT_EQ(cfg->apns.production.port, 2197);
  EXPECT_EQ(cfg->apns.sandbox.host, "::1");
  EXPECT_EQ(cfg->apns.sandbox.port, 443);
  EXPECT_EQ(cfg->apns.ca_file, "/etc/ssl/apple.pem");
  EXPECT_EQ(cfg->database.host, "db.test.internal");
  EXPECT_EQ(cfg->database.port, 3310);
  EXPECT_EQ(cfg->database.socket, "/run/mysqld.sock");
  EXPECT_EQ(cfg->database.password_env, "MP_TEST_DB_PASSWORD");
  EXPECT_EQ(cfg->database.pool_size, 8u);
  EXPECT_EQ(cfg->database.queue_limit, 500u);
  EXPECT_EQ(cfg->database.connect_timeout, std::chrono::milliseconds(100));
  EXPECT_EQ(cfg->database.query_timeout, std::chrono::milliseconds(600000));
  EXPECT_TRUE(cfg->database.migrate_on_start);
  EXPECT_EQ(cfg->limits.max_body_bytes, 2048u);
  EXPECT_EQ(cfg->limits.max_header_bytes, 4096u);
  EXPECT_EQ(cfg->limits.max_connections, 7u);
  EXPECT_EQ(cfg->limits.handshake_timeout, std::chrono::milliseconds(1000));
  EXPECT_EQ(cfg->limits.request_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(cfg->limits.idle_timeout, std::chrono::milliseconds(3000));
  EXPECT_EQ(cfg->limits.shutdown_grace, std::chrono::milliseconds(0));
  EXPECT_EQ(cfg->threads, 256u);
  EXPECT_EQ(cfg->log_level, "debug");
}

TEST(RegionConfigDatabaseHosts, HostAndPortAloneAreAListOfOne) {
  json doc = minimal();
  doc["database"].update({{"host", "db.test.internal"}, {"port", 3310}});
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  ASSERT_EQ(cfg->database.hosts.size(), 1u);
  EXPECT_EQ(cfg->database.hosts[0].host, "db.test.internal");
  EXPECT_EQ(cfg->database.hosts[0].port, 3310);

  const auto defaults = parse(minimal());
  ASSERT_TRUE(defaults.ok()) << error_of(defaults);
  ASSERT_EQ(defaults->database.hosts.size(), 1u);
  EXPECT_EQ(defaults->database.hosts[0].host, "127.0.0.1");
  EXPECT_EQ(defaults->database.hosts[0].port, 3306);
}

TEST(RegionConfigDatabaseHosts, AFailoverListKeepsItsOrder) {
  json doc = minimal();
  doc["database"]["hosts"] = {"db3.test.internal:3307", "10.0.0.2", "[fd00::1]:3310", "[::1]"};
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  const auto& hosts = cfg->database.hosts;
  ASSERT_EQ(hosts.size(), 4u);
  EXPECT_EQ(hosts[0].host, "db3.test.internal");
  EXPECT_EQ(hosts[0].port, 3307);
  EXPECT_EQ(hosts[1].host, "10.0.0.2");
  EXPECT_EQ(hosts[1].port, 3306);  // the MariaDB port when none is given
  EXPECT_EQ(hosts[2].host, "fd00::1");
  EXPECT_EQ(hosts[2].port, 3310);
  EXPECT_EQ(hosts[3].host, "::1");
  EXPECT_EQ(hosts[3].port, 3306);
  // host and port mirror the first node, for whatever shows one server.
  EXPECT_EQ(cfg->database.host, "db3.test.internal");
  EXPECT_EQ(cfg->database.port, 3307);
}

TEST(RegionConfigDatabaseHosts, ACommaSeparatedOverrideIsTheSameList) {
  const auto cfg =
      parse(minimal(), {"database.hosts=127.0.0.1:3320,127.0.0.1:3321,127.0.0.1:3322"});
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  ASSERT_EQ(cfg->database.hosts.size(), 3u);
  EXPECT_EQ(cfg->database.hosts[2].host, "127.0.0.1");
  EXPECT_EQ(cfg->database.hosts[2].port, 3322);
  const auto json_list = parse(minimal(), {R"(database.hosts=["a.internal:1","b.internal:2"])"});
  ASSERT_TRUE(json_list.ok()) << error_of(json_list);
  EXPECT_EQ(json_list->database.hosts[1].host, "b.internal");
  EXPECT_EQ(json_list->database.hosts[1].port, 2);
}

TEST(RegionConfigDatabaseHosts, EveryBadEntryIsNamed) {
  const std::string at = "regions/test.json: database.hosts";
  struct Case {
    json hosts;
    std::string error;
  };
  const std::vector<Case> cases = {
      {json::array(), at + ": must be an array of 1 to 16 \"host:port\" strings, got an array"},
      {42, at + ": must be an array of 1 to 16 \"host:port\" strings, got 42"},
      {json::array({7}), at + "[0]: must be a \"host:port\" string, got 7"},
      {json::array({"db.internal:0"}),
       at + "[0]: the port must be an integer from 1 to 65535, got \"db.internal:0\""},
      {json::array({"db.internal:65536"}),
       at + "[0]: the port must be an integer from 1 to 65535, got \"db.internal:65536\""},
      {json::array({"db.internal:33o6"}),
       at + "[0]: the port must be an integer from 1 to 65535, got \"db.internal:33o6\""},
      {json::array({"db.internal:"}), at + "[0]: the port after : is empty, got \"db.internal:\""},
      {json::array({"bad_host:3306"}),
       at + "[0]: must be \"host:port\" with a host name or IP address as host, got "
            "\"bad_host:3306\""},
      {json::array({":3306"}),
       at + "[0]: must be \"host:port\" with a host name or IP address as host, got \":3306\""},
      {json::array({"fd00::1"}),
       at + "[0]: an IPv6 address must be written in [ ], e.g. \"[::1]:3306\", got \"fd00::1\""},
      {json::array({"[fd00::1:3306"}),
       at + "[0]: an IPv6 address in [ ] has no closing ], got \"[fd00::1:3306\""},
      {json::array({"[db.internal]:3306"}),
       at + "[0]: inside [ ] must be an IPv6 address, got \"[db.internal]:3306\""},
      {json::array({"[::1]3306"}),
       at + "[0]: expected :port after the ] of an IPv6 address, got \"[::1]3306\""},
      {json::array({"a.internal:3306", "b.internal", "a.internal:3306"}),
       at + "[2]: names the same server twice, got \"a.internal:3306\""},
  };
  for (const auto& c : cases) {
    json doc = minimal();
    doc["database"]["hosts"] = c.hosts;
    EXPECT_EQ(error_of(doc), c.error) << c.hosts.dump();
  }
  json many = minimal();
  many["database"]["hosts"] = json::array();
  for (int i = 1; i <= 17; ++i) many["database"]["hosts"].push_back("10.0.0." + std::to_string(i));
  EXPECT_NE(error_of(many).find(at + ": must be an array of 1 to 16"), std::string::npos);
}

TEST(RegionConfigDatabaseHosts, ExcludesHostPortAndSocket) {
  json doc = minimal();
  doc["database"]["hosts"] = {"a.internal:3306", "b.internal:3306"};
  doc["database"]["port"] = 3307;
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database: give either hosts (a failover list) or host and port, "
            "not both");
  doc["database"].erase("port");
  doc["database"]["socket"] = "/run/mysqld/mysqld.sock";
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database: give either hosts (TCP servers) or socket, not both");
}

TEST(RegionConfigErrors, NotJsonNamesLineAndColumn) {
  const auto cfg = parse_region("{\n  \"region\": dev\n}", kSource);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.error().code, Errc::invalid_argument);
  EXPECT_EQ(cfg.error().message,
            "regions/test.json: not valid JSON at line 2, column 13: syntax error while parsing "
            "value - invalid literal; last read: '\"region\": d'");
}

TEST(RegionConfigErrors, EmptyTextIsNotJson) {
  EXPECT_EQ(error_of(parse_region("", kSource)),
            "regions/test.json: not valid JSON at line 1, column 1: syntax error while parsing "
            "value - unexpected end of input; expected '[', '{', or a literal");
}

TEST(RegionConfigErrors, TopLevelMustBeAnObject) {
  EXPECT_EQ(error_of(parse_region("[1, 2]", kSource)),
            "regions/test.json: must be a JSON object at the top level, got an array");
}

TEST(RegionConfigErrors, MissingFileSaysCannotRead) {
  const TempDir dir;
  const fs::path file = dir.path() / "absent.json";
  const auto cfg = load_region(file);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.error().code, Errc::io);
  EXPECT_EQ(cfg.error().message, file.string() + ": cannot read: No such file or directory");
}

TEST(RegionConfigErrors, MissingRequiredField) {
  json doc = minimal();
  doc["database"].erase("name");
  EXPECT_EQ(error_of(doc), "regions/test.json: database.name: missing (required)");
}

TEST(RegionConfigErrors, MissingRequiredSection) {
  json doc = minimal();
  doc.erase("listener");
  EXPECT_EQ(error_of(doc), "regions/test.json: listener: missing (required)");
}

TEST(RegionConfigErrors, WrongTypes) {
  json doc = minimal();
  doc["region"] = 42;
  EXPECT_EQ(error_of(doc), "regions/test.json: region: must be a string, got 42");
  doc = minimal();
  doc["database"]["migrate_on_start"] = "yes";
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database.migrate_on_start: must be true or false, got \"yes\"");
  doc = minimal();
  doc["listener"] = "localhost:8443";
  EXPECT_EQ(error_of(doc),
            "regions/test.json: listener: must be an object, got \"localhost:8443\"");
}

TEST(RegionConfigErrors, NumbersOutOfRange) {
  const std::string rule =
      "regions/test.json: database.port: must be an integer from 1 to 65535, got ";
  for (const auto& [value, shown] :
       std::vector<std::pair<json, std::string>>{{"abc", "\"abc\""},
                                                 {0, "0"},
                                                 {65536, "65536"},
                                                 {-1, "-1"},
                                                 {3306.5, "3306.5"},
                                                 {json::array({3306}), "an array"}}) {
    json doc = minimal();
    doc["database"]["port"] = value;
    EXPECT_EQ(error_of(doc), rule + shown);
  }
  json doc = minimal();
  doc["limits"] = {{"max_body_bytes", 1023}};
  doc["threads"] = 257;
  EXPECT_EQ(error_of(doc),
            "regions/test.json: limits.max_body_bytes: must be an integer from 1024 to 67108864, "
            "got 1023\n"
            "regions/test.json: threads: must be an integer from 0 to 256, got 257");
}

TEST(RegionConfigErrors, ListenerPortZeroIsAllowed) {
  json doc = minimal();
  doc["listener"]["port"] = 0;
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_EQ(cfg->listener.port, 0);
}

TEST(RegionConfigErrors, BadHostNames) {
  for (const std::string& host : std::vector<std::string>{
           "bad_host.example", "-lead.example", "trail-.example", "double..dot", "trailing.dot.",
           "", std::string(64, 'a') + ".example", "has space.example"}) {
    json doc = minimal();
    doc["portal_host"] = host;
    EXPECT_EQ(error_of(doc),
              "regions/test.json: portal_host: must be a host name (dot-separated labels of "
              "letters, digits and inner hyphens), got \"" +
                  host + "\"");
  }
  // 253 characters is the longest name DNS carries; 63 the longest label.
  const std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(61, 'd');
  json doc = minimal();
  doc["listener"]["public_host"] = longest;
  EXPECT_TRUE(parse(doc).ok()) << error_of(doc);
  doc["listener"]["public_host"] = longest + "d";
  EXPECT_NE(error_of(doc).find("listener.public_host: must be a host name"), std::string::npos);
  doc["listener"]["public_host"] = "x-1.Example";
  EXPECT_TRUE(parse(doc).ok()) << error_of(doc);
}

TEST(RegionConfigErrors, BadBindAddress) {
  for (const std::string address : {"localhost", "256.1.1.1", "[::1]", "127.0.0.1:80", ""}) {
    json doc = minimal();
    doc["listener"]["bind_address"] = address;
    EXPECT_EQ(error_of(doc),
              "regions/test.json: listener.bind_address: must be an IPv4 or IPv6 address such as "
              "0.0.0.0 or ::, got \"" +
                  address + "\"");
  }
  for (const std::string address : {"0.0.0.0", "::", "::1", "fe80::1"}) {
    json doc = minimal();
    doc["listener"]["bind_address"] = address;
    EXPECT_TRUE(parse(doc).ok()) << error_of(doc);
  }
}

TEST(RegionConfigErrors, BadCustomerIdPrefix) {
  for (const std::string prefix : {"USE1", "u", "use1use1x", "us-1", ""}) {
    json doc = minimal();
    doc["customer_id_prefix"] = prefix;
    EXPECT_EQ(error_of(doc),
              "regions/test.json: customer_id_prefix: must be 2 to 8 lowercase letters or digits, "
              "got \"" +
                  prefix + "\"");
  }
}

TEST(RegionConfigErrors, BadRegionNameAndOtherStrings) {
  json doc = minimal();
  doc["region"] = "1dev";
  doc["database"]["name"] = "mailpush-dev";
  doc["database"]["password_env"] = "db_password";
  doc["log_level"] = "verbose";
  EXPECT_EQ(error_of(doc),
            "regions/test.json: region: must be 2 to 32 lowercase letters, digits or hyphens, "
            "starting with a letter, got \"1dev\"\n"
            "regions/test.json: database.name: must be 1 to 64 letters, digits or underscores, "
            "got \"mailpush-dev\"\n"
            "regions/test.json: database.password_env: must be an environment variable name of "
            "capital letters, digits and underscores, got \"db_password\"\n"
            "regions/test.json: log_level: must be one of debug, info, warn, error, got "
            "\"verbose\"");
}

TEST(RegionConfigErrors, DatabaseUserWithoutControlCharacters) {
  json doc = minimal();
  doc["database"]["user"] = "mail\x7fpush";
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database.user: must be 1 to 80 characters without control "
            "characters, got \"mail\x7fpush\"");
  doc["database"]["user"] = "mail\tpush";
  EXPECT_NE(error_of(doc).find("got \"mail\\tpush\""), std::string::npos) << error_of(doc);
  doc["database"]["user"] = std::string(80, 'u');
  EXPECT_TRUE(parse(doc).ok()) << error_of(doc);
}

TEST(RegionConfigErrors, UnknownFieldListsTheKnownOnes) {
  json doc = minimal();
  doc["listener"]["prot"] = 8443;
  EXPECT_EQ(error_of(doc),
            "regions/test.json: listener.prot: unknown field (known: public_host, bind_address, "
            "port, tls_cert, tls_key, tls_poll_interval_ms, trusted_proxies, metrics_allow, "
            "proxy_protocol, tls_ticket_period_s, heard_flush_s, heard_pending_max)");
  doc = minimal();
  doc["apns"] = {{"production", {{"host", "a.example"}, {"prt", 1}}}};
  EXPECT_EQ(error_of(doc),
            "regions/test.json: apns.production.prt: unknown field (known: host, port)");
}

TEST(RegionConfigErrors, PasswordIsRefusedAndNeverShown) {
  const std::string secret = "hunter2-Secret-Value";
  json doc = minimal();
  doc["database"]["password"] = secret;
  const std::string rule =
      ": passwords are not allowed in a region file; name an environment variable in "
      "password_env or a file in password_file";
  EXPECT_EQ(error_of(doc), "regions/test.json: database.password" + rule);

  doc = minimal();
  doc["limits"] = {{"Password", secret}};
  doc["listener"]["extra"] = {{"password", secret}};
  const std::string message = error_of(doc);
  EXPECT_EQ(message, "regions/test.json: listener.extra.password" + rule +
                         "\nregions/test.json: limits.Password" + rule +
                         "\nregions/test.json: listener.extra: unknown field (known: "
                         "public_host, bind_address, port, tls_cert, tls_key, "
                         "tls_poll_interval_ms, trusted_proxies, "
                         "metrics_allow, proxy_protocol, tls_ticket_period_s, heard_flush_s, "
                         "heard_pending_max)");
  EXPECT_EQ(message.find("hunter2"), std::string::npos);
}

TEST(RegionConfigErrors, ExactlyOnePasswordSource) {
  json doc = minimal();
  doc["database"]["password_file"] = "/run/secrets/db";
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database: give only one of password_env and password_file, not "
            "both");
  doc["database"].erase("password_env");
  doc["database"].erase("password_file");
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database: no password source: name an environment variable in "
            "password_env or a file in password_file");
}

TEST(RegionConfigErrors, AllProblemsAreReportedTogether) {
  json doc = minimal();
  doc.erase("region");
  doc["listener"]["port"] = 99999;
  doc["listener"]["bind_address"] = "everywhere";
  doc["database"]["user"] = "";
  doc["tls"] = true;
  const std::string message = error_of(doc);
  EXPECT_EQ(message,
            "regions/test.json: tls: unknown field (known: region, customer_id_prefix, "
            "registration_host, portal_host, listener, apns, database, limits, portal, "
            "registration, dispatch, threads, log_level)\n"
            "regions/test.json: region: missing (required)\n"
            "regions/test.json: listener.bind_address: must be an IPv4 or IPv6 address such as "
            "0.0.0.0 or ::, got \"everywhere\"\n"
            "regions/test.json: listener.port: must be an integer from 0 to 65535, got 99999\n"
            "regions/test.json: database.user: must be 1 to 80 characters without control "
            "characters, got \"\"");
  EXPECT_EQ(parse(doc).error().code, Errc::invalid_argument);
}

TEST(RegionConfigErrors, LongValuesAreShortenedInMessages) {
  json doc = minimal();
  doc["database"]["name"] = std::string(200, 'x');
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database.name: must be 1 to 64 letters, digits or "
            "underscores, got \"" +
                std::string(76, 'x') + "...");
}

// Writes the minimal region with its TLS files relative to the region file, like dev.json does.
class RegionFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    json doc = minimal();
    doc["listener"]["tls_cert"] = "../tls/listener.crt";
    doc["listener"]["tls_key"] = "../tls/listener.key";
    region_ = dir_.write("regions/test.json", doc.dump(2));
  }

  const TempDir dir_;
  fs::path region_;
};

TEST_F(RegionFiles, RelativePathsResolveAgainstTheFileFolder) {
  LoadOptions options;
  options.check_files = false;
  options.overrides = {"database.socket=../run/mysqld.sock", "apns.ca_file=/etc/ssl/apple.pem"};
  const auto cfg = load_region(region_, options);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_EQ(cfg->source, region_);
  EXPECT_EQ(cfg->listener.tls_cert, dir_.path() / "regions" / "../tls/listener.crt");
  EXPECT_EQ(cfg->database.socket, dir_.path() / "regions" / "../run/mysqld.sock");
  EXPECT_EQ(cfg->apns.ca_file, "/etc/ssl/apple.pem");
}

TEST_F(RegionFiles, CheckFilesNamesTheMissingFile) {
  dir_.write("tls/listener.key", "key");
  const auto cfg = load_region(region_);
  const fs::path cert = dir_.path() / "regions" / "../tls/listener.crt";
  EXPECT_EQ(error_of(cfg), region_.string() + ": listener.tls_cert: cannot read " + cert.string() +
                               ": No such file or directory");

  LoadOptions unchecked;
  unchecked.check_files = false;
  EXPECT_TRUE(load_region(region_, unchecked).ok());
}

TEST_F(RegionFiles, CheckFilesAcceptsPresentFilesAndRefusesFolders) {
  dir_.write("tls/listener.crt", "cert");
  dir_.write("tls/listener.key", "key");
  dir_.write("secrets/db", "pw\n");
  LoadOptions options;
  // An override cannot delete password_env, so it replaces the whole section with a file source.
  options.overrides = {
      "database={\"name\":\"m\",\"user\":\"u\",\"password_file\":\"../secrets/db\"}"};
  const auto cfg = load_region(region_, options);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);

  options.overrides.push_back("apns.ca_file=" + dir_.path().string());
  EXPECT_EQ(
      error_of(load_region(region_, options)),
      region_.string() + ": apns.ca_file: " + dir_.path().string() + " is not a regular file");
}

TEST(RegionConfigOverrides, NumberStringBoolAndNested) {
  const auto cfg =
      parse(minimal(), {"database.port=3310", "log_level=debug", "database.migrate_on_start=true",
                        "apns.sandbox.host=sb.example", "region=\"quoted\""});
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_EQ(cfg->database.port, 3310);
  EXPECT_EQ(cfg->log_level, "debug");
  EXPECT_TRUE(cfg->database.migrate_on_start);
  EXPECT_EQ(cfg->apns.sandbox.host, "sb.example");
  EXPECT_EQ(cfg->apns.production.host, "api.push.apple.com");
  EXPECT_EQ(cfg->region, "quoted");
}

TEST(RegionConfigOverrides, AreValidatedLikeTheFile) {
  EXPECT_EQ(error_of(minimal(), {"database.port=abc"}),
            "regions/test.json: database.port: must be an integer from 1 to 65535, got \"abc\"");
  EXPECT_EQ(error_of(minimal(), {"database.prot=3310"}),
            "regions/test.json: database.prot: unknown field (known: host, port, hosts, socket, "
            "name, user, password_env, password_file, pool_size, queue_limit, connect_timeout_ms, "
            "query_timeout_ms, migrate_on_start, batch_max, batch_window_ms)");
  const std::string message = error_of(minimal(), {"database.password=s3cr3t-override"});
  EXPECT_NE(message.find("database.password: passwords are not allowed"), std::string::npos);
  EXPECT_EQ(message.find("s3cr3t-override"), std::string::npos);
}

TEST(RegionConfigOverrides, MalformedOnesAreNamed) {
  const std::string rule = ": expected <field.path>=<value>, e.g. database.port=3310";
  EXPECT_EQ(error_of(minimal(), {"database.port"}),
            "regions/test.json: --set database.port" + rule);
  EXPECT_EQ(error_of(minimal(), {"=3310"}), "regions/test.json: --set =3310" + rule);
  EXPECT_EQ(error_of(minimal(), {"database..port=1"}),
            "regions/test.json: --set database..port=1" + rule);
  EXPECT_EQ(error_of(minimal(), {"region.name=x"}),
            "regions/test.json: --set region.name=x: region is not an object");
}

TEST(DatabasePassword, FromEnvironment) {
  const std::string name = "MP_TEST_DB_PASSWORD_" + std::to_string(::getpid());
  DatabaseConfig db;
  db.password_env = name;
  ::unsetenv(name.c_str());
  EXPECT_EQ(error_of(database_password(db)),
            "database.password_env: environment variable " + name + " is not set");
  ::setenv(name.c_str(), "", 1);
  EXPECT_EQ(error_of(database_password(db)),
            "database.password_env: environment variable " + name + " is empty");
  ::setenv(name.c_str(), "env-Secret-1", 1);
  const auto password = database_password(db);
  ASSERT_TRUE(password.ok()) << error_of(password);
  EXPECT_EQ(*password, "env-Secret-1");

  db.password_file = "/run/secrets/db";
  const std::string message = error_of(database_password(db));
  EXPECT_EQ(message, "database: give only one of password_env and password_file, not both");
  EXPECT_EQ(message.find("env-Secret-1"), std::string::npos);
  ::unsetenv(name.c_str());
}

TEST(DatabasePassword, FromFileStripsOneTrailingNewline) {
  const TempDir dir;
  DatabaseConfig db;
  for (const auto& [content, expected] :
       std::vector<std::pair<std::string, std::string>>{{"file-Secret\n", "file-Secret"},
                                                        {"file-Secret\r\n", "file-Secret"},
                                                        {"file-Secret", "file-Secret"},
                                                        {"file-Secret\n\n", "file-Secret\n"},
                                                        {" spaced ", " spaced "}}) {
    db.password_file = dir.write("password", content);
    const auto password = database_password(db);
    ASSERT_TRUE(password.ok()) << error_of(password);
    EXPECT_EQ(*password, expected);
  }
}

TEST(DatabasePassword, FileErrorsNameThePathNotTheContent) {
  const TempDir dir;
  DatabaseConfig db;
  db.password_file = dir.write("empty", "\r\n");
  EXPECT_EQ(error_of(database_password(db)),
            "database.password_file: " + db.password_file->string() + " is empty");

  db.password_file = dir.path() / "absent";
  const auto missing = database_password(db);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::io);
  EXPECT_EQ(missing.error().message, "database.password_file: cannot read " +
                                         db.password_file->string() +
                                         ": No such file or directory");

  db.password_file = dir.path();
  EXPECT_EQ(error_of(database_password(db)),
            "database.password_file: cannot read " + dir.path().string() + ": Is a directory");
}

TEST(DatabasePassword, NoSourceIsAnError) {
  EXPECT_EQ(error_of(database_password(DatabaseConfig{})),
            "database: no password source: set password_env or password_file");
}

TEST(RegionConfigPortal, DefaultsAndEveryField) {
  const auto defaults = parse(minimal());
  ASSERT_TRUE(defaults.ok());
  const PortalConfig portal;
  EXPECT_FALSE(defaults->portal.kek_file);
  EXPECT_EQ(defaults->portal.max_upload_bytes, portal.max_upload_bytes);
  EXPECT_EQ(defaults->portal.credential_refresh, std::chrono::seconds(30));
  EXPECT_EQ(defaults->portal.expiry_check_interval, std::chrono::seconds(3600));
  EXPECT_TRUE(defaults->portal.other_regions.empty());

  json doc = minimal();
  doc["portal"] = {{"kek_file", "/etc/mailpush/kek"},
                   {"admin_token_file", "/etc/mailpush/admin-token.sha384"},
                   {"trust_anchors", "/etc/mailpush/apple-push-ca.pem"},
                   {"max_upload_bytes", 32768},
                   {"failed_attempts_per_15_minutes", 5},
                   {"credential_refresh_s", 10},
                   {"expiry_check_interval_s", 60},
                   {"expiry_webhook_url", "https://hooks.example.net:8443/mailpush"},
                   {"other_regions", {{"eu-west-1", "portal.euw1.mailpush.example"}}}};
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_EQ(cfg->portal.kek_file, "/etc/mailpush/kek");
  EXPECT_EQ(cfg->portal.admin_token_file, "/etc/mailpush/admin-token.sha384");
  EXPECT_EQ(cfg->portal.trust_anchors, "/etc/mailpush/apple-push-ca.pem");
  EXPECT_EQ(cfg->portal.max_upload_bytes, 32768u);
  EXPECT_EQ(cfg->portal.failed_attempts_per_15_minutes, 5u);
  EXPECT_EQ(cfg->portal.credential_refresh, std::chrono::seconds(10));
  EXPECT_EQ(cfg->portal.expiry_check_interval, std::chrono::seconds(60));
  EXPECT_EQ(cfg->portal.expiry_webhook_url, "https://hooks.example.net:8443/mailpush");
  EXPECT_EQ(cfg->portal.other_regions.at("eu-west-1"), "portal.euw1.mailpush.example");
  EXPECT_FALSE(cfg->portal.listen) << "the portal shares the listener by default";
  doc["portal"]["listen"] = {{"bind_address", "::"}, {"port", 9443}};
  const auto split = parse(doc);
  ASSERT_TRUE(split.ok()) << error_of(split);
  ASSERT_TRUE(split->portal.listen);
  EXPECT_EQ(split->portal.listen->bind_address, "::");
  EXPECT_EQ(split->portal.listen->port, 9443);
  doc["portal"]["listen"] = {{"bind_address", "portal.example"}};
  EXPECT_NE(error_of(doc).find("portal.listen.bind_address: must be an IPv4 or IPv6 address"),
            std::string::npos);
  EXPECT_NE(error_of(doc).find("portal.listen.port: missing"), std::string::npos);
}

TEST(RegionConfigPortal, BadValuesAreNamed) {
  json doc = minimal();
  doc["portal"] = {{"credential_refresh_s", 61},
                   {"expiry_webhook_url", "ftp://user:pw@host/x"},
                   {"other_regions", {{"Not A Region", "x.example"}, {"eu-west-1", 7}}}};
  const std::string message = error_of(doc);
  EXPECT_NE(message.find("portal.credential_refresh_s: must be an integer from 1 to 60"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("portal.expiry_webhook_url: must be an http:// or https:// URL"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("user:pw"), std::string::npos) << "URLs may hold credentials";
  EXPECT_NE(message.find("portal.other_regions.Not A Region: is not a region name"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("portal.other_regions.eu-west-1: must be a host name"), std::string::npos)
      << message;
}

}  // namespace
}  // namespace mp::config

namespace mp::config {
namespace {

TEST(RegionConfigListener, TrustedProxiesAreCidrRanges) {
  json doc = minimal();
  doc["listener"]["trusted_proxies"] = {"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"};
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->listener.trusted_proxies,
            (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"}));

  doc["listener"]["trusted_proxies"] = {"10.1.0.0/8", 7};
  EXPECT_EQ(error_of(doc),
            "regions/test.json: listener.trusted_proxies[0]: \"10.1.0.0/8\" has host bits set; did "
            "you mean 10.0.0.0/8?\nregions/test.json: listener.trusted_proxies[1]: must be a "
            "string, got 7");
  doc["listener"]["trusted_proxies"] = "10.0.0.0/8";
  EXPECT_EQ(error_of(doc),
            "regions/test.json: listener.trusted_proxies: must be an array of CIDR ranges, got "
            "\"10.0.0.0/8\"");
}

TEST(RegionConfigListener, MetricsAreForLoopbackUnlessTheRegionNamesItsNetwork) {
  json doc = minimal();
  const auto defaults = parse(doc);
  ASSERT_TRUE(defaults.ok()) << defaults.error().message;
  EXPECT_EQ(defaults->listener.metrics_allow, (std::vector<std::string>{"127.0.0.0/8", "::1/128"}));
  doc["listener"]["metrics_allow"] = {"10.20.0.0/16"};
  const auto named = parse(doc);
  ASSERT_TRUE(named.ok()) << named.error().message;
  EXPECT_EQ(named->listener.metrics_allow, (std::vector<std::string>{"10.20.0.0/16"}));
  doc["listener"]["metrics_allow"] = json::array();  // nobody
  const auto nobody = parse(doc);
  ASSERT_TRUE(nobody.ok());
  EXPECT_TRUE(nobody->listener.metrics_allow.empty());
  doc["listener"]["metrics_allow"] = {"10.20.0.1/16"};
  EXPECT_EQ(error_of(doc),
            "regions/test.json: listener.metrics_allow[0]: \"10.20.0.1/16\" has host bits set; "
            "did you mean 10.20.0.0/16?");
}

TEST(RegionConfigLimits, XmlAndCacheLimitsHaveDefaultsAndRanges) {
  const auto defaults = parse(minimal());
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->limits.max_xml_depth, 32u);
  EXPECT_EQ(defaults->limits.max_xml_elements, 10000u);
  EXPECT_EQ(defaults->limits.registration_cache_entries, 4000000u);
  EXPECT_EQ(defaults->database.batch_max, 200u);
  json doc = minimal();
  doc["limits"]["max_xml_depth"] = 4;
  doc["database"]["batch_max"] = 0;
  EXPECT_EQ(error_of(doc),
            "regions/test.json: database.batch_max: must be an integer from 1 to 5000, got 0\n"
            "regions/test.json: limits.max_xml_depth: must be an integer from 8 to 256, got 4");
}

}  // namespace
}  // namespace mp::config
