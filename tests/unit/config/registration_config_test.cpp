// Tests for the `registration` section of region files: defaults, every field, ranges, the
// prefix -> host map, the secret file check, and what the shipped dev region holds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "config/region_config.hpp"

namespace mp::config {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

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

Result<RegionConfig> parse(const json& doc, bool check_files = false) {
  LoadOptions options;
  options.check_files = check_files;
  return parse_region(doc.dump(), "regions/test.json", options);
}

std::string error_of(const Result<RegionConfig>& r) {
  return r.ok() ? "(no error)" : r.error().message;
}

TEST(RegionConfigRegistration, DefaultsWhenTheSectionIsAbsent) {
  const auto cfg = parse(minimal());
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_FALSE(cfg->registration.secret_file) << "without a secret the API answers 503";
  EXPECT_EQ(cfg->registration.status_frequency_minutes, 30u);
  EXPECT_EQ(cfg->registration.per_customer_per_minute, 600u);
  EXPECT_EQ(cfg->registration.max_per_device, 16u);
  EXPECT_EQ(cfg->registration.max_per_customer, 1000000u);
  EXPECT_EQ(cfg->registration.unconfirmed_expiry_hours, 24u);
  EXPECT_EQ(cfg->registration.refusals_per_address_per_minute, 60u);
  EXPECT_FALSE(cfg->limits.refuse_untagged_secrets);
  EXPECT_TRUE(cfg->registration.other_regions.empty());
}

TEST(RegionConfigRegistration, ReadsEveryField) {
  json doc = minimal();
  doc["registration"] = {
      {"secret_file", "/etc/mailpush/region-secret"},
      {"status_frequency_minutes", 15},
      {"per_customer_per_minute", 120},
      {"max_per_device", 4},
      {"max_per_customer", 5000},
      {"unconfirmed_expiry_hours", 0},
      {"refusals_per_address_per_minute", 10},
      {"other_regions",
       {{"euw1", "register.euw1.mailpush.example"}, {"apse1", "register.apse1.mailpush.example"}}}};
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_EQ(cfg->registration.secret_file, "/etc/mailpush/region-secret");
  EXPECT_EQ(cfg->registration.status_frequency_minutes, 15u);
  EXPECT_EQ(cfg->registration.per_customer_per_minute, 120u);
  EXPECT_EQ(cfg->registration.max_per_device, 4u);
  EXPECT_EQ(cfg->registration.max_per_customer, 5000u);
  EXPECT_EQ(cfg->registration.unconfirmed_expiry_hours, 0u);
  EXPECT_EQ(cfg->registration.refusals_per_address_per_minute, 10u);
  ASSERT_EQ(cfg->registration.other_regions.size(), 2u);
  EXPECT_EQ(cfg->registration.other_regions.at("euw1"), "register.euw1.mailpush.example");
  EXPECT_EQ(cfg->registration.other_regions.at("apse1"), "register.apse1.mailpush.example");
}

TEST(RegionConfigRegistration, StatusFrequencyIsExchangesRange) {
  for (const int ok : {1, 30, 1440}) {
    json doc = minimal();
    doc["registration"] = {{"status_frequency_minutes", ok}};
    EXPECT_TRUE(parse(doc).ok()) << ok;
  }
  for (const json& bad : {json(0), json(1441), json(-5), json("30"), json(2.5)}) {
    json doc = minimal();
    doc["registration"] = {{"status_frequency_minutes", bad}};
    const std::string message = error_of(parse(doc));
    EXPECT_NE(message.find("registration.status_frequency_minutes: must be an integer from 1 to "
                           "1440"),
              std::string::npos)
        << bad.dump() << ": " << message;
  }
}

TEST(RegionConfigRegistration, RateLimitMustBePositive) {
  json doc = minimal();
  doc["registration"] = {{"per_customer_per_minute", 0}};
  EXPECT_NE(error_of(parse(doc)).find("registration.per_customer_per_minute: must be an integer"),
            std::string::npos)
      << error_of(parse(doc));
}

TEST(RegionConfigRegistration, QuotasAndRefusalLimitsAreBounded) {
  for (const auto& [key, bad] :
       std::vector<std::pair<std::string, json>>{{"max_per_device", 0},
                                                 {"max_per_device", 1001},
                                                 {"max_per_customer", 0},
                                                 {"refusals_per_address_per_minute", 0},
                                                 {"unconfirmed_expiry_hours", 8761},
                                                 {"unconfirmed_expiry_hours", -1},
                                                 {"max_per_device", "16"}}) {
    json doc = minimal();
    doc["registration"] = {{key, bad}};
    EXPECT_NE(error_of(parse(doc)).find("registration." + key + ": must be an integer"),
              std::string::npos)
        << key << " " << bad.dump() << ": " << error_of(parse(doc));
  }
  json doc = minimal();
  doc["limits"] = {{"refuse_untagged_secrets", true},
                   {"callback_burst_per_registration", 10},
                   {"callbacks_per_second_per_registration", 0},
                   {"callback_burst_per_customer", 100},
                   {"callbacks_per_second_per_customer", 50}};
  const auto cfg = parse(doc);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_TRUE(cfg->limits.refuse_untagged_secrets);
  EXPECT_EQ(cfg->limits.callback_burst_per_registration, 10u);
  EXPECT_EQ(cfg->limits.callbacks_per_second_per_registration, 0u) << "0: no limit";
  EXPECT_EQ(cfg->limits.callback_burst_per_customer, 100u);
  EXPECT_EQ(cfg->limits.callbacks_per_second_per_customer, 50u);
  const auto defaults = parse(minimal());
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->limits.callback_burst_per_registration, 120u);
  EXPECT_EQ(defaults->limits.callbacks_per_second_per_registration, 4u);
  EXPECT_EQ(defaults->limits.callbacks_per_second_per_customer, 5000u);
  doc["limits"] = {{"callback_burst_per_registration", 0}};
  EXPECT_NE(error_of(parse(doc)).find("limits.callback_burst_per_registration: must be an integer"),
            std::string::npos)
      << error_of(parse(doc));
}

TEST(RegionConfigRegistration, OtherRegionsAreCustomerIdPrefixesToHosts) {
  json doc = minimal();
  doc["registration"] = {{"other_regions",
                          {{"eu-west-1", "register.euw1.mailpush.example"},
                           {"EUW1", "register.euw1.mailpush.example"},
                           {"euw1", "not a host"},
                           {"apse1", 7}}}};
  const std::string message = error_of(parse(doc));
  // Region names (with '-') and upper case are not Customer ID prefixes.
  EXPECT_NE(message.find("registration.other_regions.eu-west-1:"), std::string::npos) << message;
  EXPECT_NE(message.find("registration.other_regions.EUW1:"), std::string::npos) << message;
  EXPECT_NE(message.find("registration.other_regions.euw1: must be a host name"), std::string::npos)
      << message;
  EXPECT_NE(message.find("registration.other_regions.apse1: must be a host name"),
            std::string::npos)
      << message;
  doc["registration"] = {{"other_regions", json::array({"euw1"})}};
  EXPECT_NE(error_of(parse(doc)).find("registration.other_regions: must be an object"),
            std::string::npos)
      << error_of(parse(doc));
}

TEST(RegionConfigRegistration, UnknownFieldsAreErrors) {
  json doc = minimal();
  doc["registration"] = {{"secret", "do-not-put-secrets-here"}};
  const std::string message = error_of(parse(doc));
  EXPECT_NE(message.find("registration.secret"), std::string::npos) << message;
  EXPECT_EQ(message.find("do-not-put-secrets-here"), std::string::npos) << message;
}

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ =
        fs::temp_directory_path() / ("mailpush-registration-config-" + std::to_string(::getpid()) +
                                     "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(RegionConfigRegistration, TheSecretFileResolvesAgainstTheRegionFileAndMustExist) {
  const TempDir dir;
  fs::create_directories(dir.path() / "regions");
  fs::create_directories(dir.path() / "tls");
  std::ofstream(dir.path() / "tls/listener.crt") << "cert";
  std::ofstream(dir.path() / "tls/listener.key") << "key";
  json doc = minimal();
  doc["listener"]["tls_cert"] = "../tls/listener.crt";
  doc["listener"]["tls_key"] = "../tls/listener.key";
  doc["registration"] = {{"secret_file", "../secrets/region-secret"}};
  const fs::path region = dir.path() / "regions/test.json";
  std::ofstream(region) << doc.dump(2);
  const fs::path secret = dir.path() / "regions" / "../secrets/region-secret";

  ::setenv("MP_TEST_DB_PASSWORD", "x", 1);
  const auto missing = load_region(region);
  EXPECT_NE(error_of(missing).find("registration.secret_file: cannot read " + secret.string()),
            std::string::npos)
      << error_of(missing);

  fs::create_directories(dir.path() / "secrets");
  std::ofstream(secret) << "region-secret x\n";
  const auto present = load_region(region);
  ASSERT_TRUE(present.ok()) << error_of(present);
  EXPECT_EQ(present->registration.secret_file, secret);
  ::unsetenv("MP_TEST_DB_PASSWORD");
}

TEST(RegionConfigRegistration, DevRegionPointsAtItsSecretAndTheOtherRegions) {
  const fs::path file = fs::path(MAILPUSH_SOURCE_DIR) / "regions" / "dev.json";
  LoadOptions options;
  options.check_files = false;
  const auto cfg = load_region(file, options);
  ASSERT_TRUE(cfg.ok()) << error_of(cfg);
  EXPECT_EQ(cfg->registration.secret_file, file.parent_path() / "../var/dev/region-secret");
  EXPECT_EQ(cfg->registration.status_frequency_minutes, 30u);
  EXPECT_EQ(cfg->registration.other_regions.at("use1"), "register.use1.mailpush.example");
  EXPECT_EQ(cfg->registration.other_regions.at("euw1"), "register.euw1.mailpush.example");
  EXPECT_EQ(cfg->registration.other_regions.at("apse1"), "register.apse1.mailpush.example");
  EXPECT_EQ(cfg->registration.other_regions.count(cfg->customer_id_prefix), 0u);
}

}  // namespace
}  // namespace mp::config
