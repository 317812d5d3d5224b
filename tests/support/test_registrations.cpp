// Implementation of the registration API fixtures in test_registrations.hpp.
#include "test_registrations.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace mp::test {
namespace fs = std::filesystem;

fs::path make_region_secret(const fs::path& dir) {
  const fs::path file = dir / "region-secret";
  std::string out;
  const int rc =
      run_command({(source_dir() / "scripts/make-region-secret.sh").string(), file.string()}, &out);
  if (rc != 0) throw std::runtime_error("scripts/make-region-secret.sh failed: " + out);
  return file;
}

OnboardedCustomer onboard_customer(std::uint16_t port, const std::string& admin_token,
                                   const fs::path& certs_dir, const std::string& region,
                                   const std::string& p12_name) {
  const std::string boundary = "----MailpushRegistrationTest9f3c";
  std::string body;
  const auto field = [&](const std::string& name, const std::string& value) {
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" +
            value + "\r\n";
  };
  body += "--" + boundary +
          "\r\nContent-Disposition: form-data; name=\"certificate\"; filename=\"push.p12\"\r\n"
          "Content-Type: application/x-pkcs12\r\n\r\n" +
          read_file(certs_dir / (p12_name + ".p12")) + "\r\n";
  field("password", read_file(certs_dir / (p12_name + ".p12.password")));
  field("app_id", "com.example.mail");
  field("region", region);
  field("display_name", "Registration test");
  body += "--" + boundary + "--\r\n";
  const HttpReply reply =
      https_request(port, "POST", "/portal/v1/customers", body,
                    {{"Content-Type", "multipart/form-data; boundary=" + boundary},
                     {"Authorization", "Bearer " + admin_token}});
  if (reply.status != 201) {
    throw std::runtime_error("onboarding failed: " + std::to_string(reply.status) + " " +
                             reply.body);
  }
  const auto created = nlohmann::json::parse(reply.body);
  return {created.at("customer_id"), created.at("registration_key"), created.at("admin_key")};
}

HttpReply post_registration_raw(std::uint16_t port, const std::string& body,
                                const std::string& content_type) {
  return https_request(port, "POST", "/v1/registrations", body, {{"Content-Type", content_type}});
}

HttpReply post_registration(std::uint16_t port, const nlohmann::json& body,
                            const std::string& capability) {
  std::vector<std::pair<std::string, std::string>> headers = {{"Content-Type", "application/json"}};
  if (!capability.empty()) headers.emplace_back("Authorization", "Bearer " + capability);
  return https_request(port, "POST", "/v1/registrations", body.dump(), headers);
}

HttpReply delete_registration(std::uint16_t port, const std::string& capability) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!capability.empty()) headers.emplace_back("Authorization", "Bearer " + capability);
  return https_request(port, "DELETE", "/v1/registrations/self", "", headers);
}

HttpReply move_registration(std::uint16_t port, const std::string& capability,
                            const std::string& device_token, const std::string& environment) {
  std::vector<std::pair<std::string, std::string>> headers = {{"Content-Type", "application/json"}};
  if (!capability.empty()) headers.emplace_back("Authorization", "Bearer " + capability);
  const nlohmann::json body = {{"device_token", device_token}, {"environment", environment}};
  return https_request(port, "PATCH", "/v1/registrations/self", body.dump(), headers);
}

std::string secret_of_listener_url(const std::string& url) {
  const std::string marker = "/ews/v1/notify/";
  const auto at = url.find(marker);
  return at == std::string::npos ? "" : url.substr(at + marker.size());
}

}  // namespace mp::test
