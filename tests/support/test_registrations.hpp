// Fixtures for tests of the registration API: a region secret file, a customer onboarded
// through the portal API of a running mailpushd, and the API's two calls.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "test_env.hpp"

namespace mp::test {

// Makes `dir`/region-secret with scripts/make-region-secret.sh (mode 0600); returns its path.
std::filesystem::path make_region_secret(const std::filesystem::path& dir);

// What onboarding shows once.
struct OnboardedCustomer {
  std::string customer_id;
  std::string registration_key;
  std::string admin_key;
};

// Creates a customer through `POST /portal/v1/customers` of the mailpushd on `port` with the
// region admin token, from `certs_dir`/`p12_name`.p12 (certs/make-apns-test-certs.sh) and its
// password, for App ID com.example.mail in region `region`. Fails the test on any error.
OnboardedCustomer onboard_customer(std::uint16_t port, const std::string& admin_token,
                                   const std::filesystem::path& certs_dir,
                                   const std::string& region = "dev",
                                   const std::string& p12_name = "mail");

// POST /v1/registrations with `body` (dumped as is) and Content-Type application/json.
// With `capability`, as `Authorization: Bearer` (the app refreshing its registration).
HttpReply post_registration(std::uint16_t port, const nlohmann::json& body,
                            const std::string& capability = "");
// The same with a raw body (hostile-input tests).
HttpReply post_registration_raw(std::uint16_t port, const std::string& body,
                                const std::string& content_type = "application/json");
// DELETE /v1/registrations/self with the capability as bearer ("" sends none).
HttpReply delete_registration(std::uint16_t port, const std::string& capability);
// PATCH /v1/registrations/self: the registration moves to a new device token.
HttpReply move_registration(std::uint16_t port, const std::string& capability,
                            const std::string& device_token,
                            const std::string& environment = "production");

// The secret at the end of a listener URL (".../ews/v1/notify/{secret}"), or "".
std::string secret_of_listener_url(const std::string& url);

}  // namespace mp::test
