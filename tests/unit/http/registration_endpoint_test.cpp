// Tests of the registration API's HTTP side without a database: body parsing and type checks,
// hostile bodies, bearer tokens, status codes, and the routes answering 410 (registration ids),
// 413, 415 and 503 (no region secret) with the JSON error form and the metric.
#include "http/registration_endpoint.hpp"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "store/mariadb_registration_store.hpp"
#include "test_env.hpp"

namespace mp::http {
namespace {

using nlohmann::json;

relay::RegistrationRefusal refusal_of(
    const std::variant<relay::RegisterRequest, relay::RegistrationRefusal>& parsed) {
  if (const auto* r = std::get_if<relay::RegistrationRefusal>(&parsed)) return *r;
  ADD_FAILURE() << "accepted";
  return {};
}

TEST(RegistrationBody, ReadsEveryField) {
  const json body = {
      {"customer_id", "dev-abc"},     {"registration_key", "rk_x"},
      {"mailbox", "a@b.example"},     {"device_token", "ab12"},
      {"environment", "development"}, {"app_version", "7.1"}};  // unknown fields are ignored
  auto parsed = parse_register_body(body.dump());
  ASSERT_TRUE(std::holds_alternative<relay::RegisterRequest>(parsed));
  const auto& r = std::get<relay::RegisterRequest>(parsed);
  EXPECT_EQ(r.customer_id, "dev-abc");
  EXPECT_EQ(r.registration_key, "rk_x");
  EXPECT_EQ(r.mailbox, "a@b.example");
  EXPECT_EQ(r.device_token, "ab12");
  EXPECT_EQ(r.environment, "development");
  EXPECT_FALSE(r.capability) << "a capability only comes from the Authorization header";

  auto without = parse_register_body(R"({"customer_id":"x"})");
  ASSERT_TRUE(std::holds_alternative<relay::RegisterRequest>(without));
  EXPECT_TRUE(std::get<relay::RegisterRequest>(without).device_token.empty())
      << "missing fields are empty: the service says which one is missing";
}

TEST(RegistrationBody, APreviousTokenIsRefusedWithWhereMovesGo) {
  for (const char* body : {R"({"customer_id":"x","previous_device_token":"cd34"})",
                           R"({"customer_id":"x","previous_device_token":null})"}) {
    const auto r = refusal_of(parse_register_body(body));
    EXPECT_EQ(r.kind, relay::RefusalKind::invalid);
    EXPECT_EQ(r.field, "previous_device_token");
    EXPECT_EQ(r.code, "use_patch_self");
    EXPECT_NE(r.message.find("PATCH /v1/registrations/self"), std::string::npos);
  }
}

TEST(RegistrationBody, MoveBodiesAndBearerTokens) {
  auto ok = parse_move_body(R"({"device_token":"ab12","environment":"production"})");
  ASSERT_TRUE(std::holds_alternative<relay::MoveRequest>(ok));
  EXPECT_EQ(std::get<relay::MoveRequest>(ok).device_token, "ab12");
  EXPECT_EQ(std::get<relay::MoveRequest>(ok).environment, "production");
  auto typed = parse_move_body(R"({"device_token":["ab12"]})");
  ASSERT_TRUE(std::holds_alternative<relay::RegistrationRefusal>(typed));
  EXPECT_EQ(std::get<relay::RegistrationRefusal>(typed).field, "device_token");

  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer  abc \t"), "abc");
  EXPECT_EQ(bearer_token("BEARER abc"), "abc");
  EXPECT_FALSE(bearer_token(""));
  EXPECT_FALSE(bearer_token("Bearer"));
  EXPECT_FALSE(bearer_token("Bearer   "));
  EXPECT_FALSE(bearer_token("Basic YWJjOmRlZg=="));
  EXPECT_FALSE(bearer_token("Bearerabc"));
}

TEST(RegistrationBody, WrongTypesNameTheField) {
  for (const auto& [field, value] :
       std::vector<std::pair<std::string, json>>{{"customer_id", 42},
                                                 {"registration_key", json::array({"rk"})},
                                                 {"mailbox", json::object()},
                                                 {"device_token", 1.5},
                                                 {"environment", true}}) {
    json body = {{"customer_id", "dev-x"}};
    body[field] = value;
    const auto r = refusal_of(parse_register_body(body.dump()));
    EXPECT_EQ(r.kind, relay::RefusalKind::invalid) << field;
    EXPECT_EQ(r.field, field);
    EXPECT_EQ(r.code, "invalid_" + field);
    EXPECT_NE(r.message.find("must be a JSON string"), std::string::npos) << r.message;
  }
}

TEST(RegistrationBody, HostileBodiesAreRefusedWithoutEchoingThem) {
  const std::string secret_looking = "rk_Zq9Xv2Lm8Np4Rt6W";
  for (const std::string& body :
       {std::string(""), std::string("null"), std::string("[1,2]"), std::string("\"text\""),
        "{\"registration_key\": \"" + secret_looking + "\"",           // truncated
        "{\"registration_key\": \"" + secret_looking + "\xff\xfe\"}",  // not UTF-8
        "{\"registration_key\": \"" + secret_looking + "\\ud800\"}",   // lone surrogate
        std::string(5000, '[') + std::string(5000, ']'),               // deep nesting
        "{\"a\":1}garbage " + secret_looking,
        // A number beyond a double: nlohmann throws out_of_range, not parse_error (found by
        // fuzz_registration).
        "{\"creid\":222222222e2222222222, \"k\": \"" + secret_looking + "\"}"}) {
    const auto r = refusal_of(parse_register_body(body));
    EXPECT_EQ(r.kind, relay::RefusalKind::invalid);
    EXPECT_EQ(r.code, "invalid_json");
    EXPECT_EQ(r.message.find(secret_looking), std::string::npos) << r.message;
  }
}

TEST(RegistrationStatus, EveryRefusalHasItsStatus) {
  using K = relay::RefusalKind;
  EXPECT_EQ(refusal_status(K::invalid), beast_http::status::bad_request);
  EXPECT_EQ(refusal_status(K::unauthorized), beast_http::status::unauthorized);
  EXPECT_EQ(refusal_status(K::forbidden), beast_http::status::forbidden);
  EXPECT_EQ(refusal_status(K::not_found), beast_http::status::not_found);
  EXPECT_EQ(refusal_status(K::device_refused), beast_http::status::conflict);
  EXPECT_EQ(refusal_status(K::wrong_region), beast_http::status::misdirected_request);
  EXPECT_EQ(refusal_status(K::rate_limited), beast_http::status::too_many_requests);
  EXPECT_EQ(refusal_status(K::unavailable), beast_http::status::service_unavailable);
  EXPECT_EQ(refusal_status(K::internal), beast_http::status::internal_server_error);
  EXPECT_EQ(refusal_status(K::gone), beast_http::status::gone);
  EXPECT_EQ(refusal_status(K::too_large), beast_http::status::payload_too_large);
  EXPECT_EQ(refusal_status(K::unsupported), beast_http::status::unsupported_media_type);
}

// The endpoint on a router, with a service that has no region secret (and so never reaches the
// pool's database).
class RegistrationRoutes : public ::testing::Test {
 protected:
  RegistrationRoutes() {
    relay::RegistrationOptions o;
    o.customer_id_prefix = "dev";
    o.listener_host = "localhost";
    service_.emplace(o, store_, nullptr, nullptr);
    endpoint_.emplace(*service_, registry_);
    endpoint_->add_routes(router_);
  }

  Response call(beast_http::verb method, const std::string& target, const std::string& body,
                const std::string& content_type = "application/json",
                const std::string& authorization = "") {
    Request req{method, target, 11};
    if (!content_type.empty()) req.set(beast_http::field::content_type, content_type);
    if (!authorization.empty()) req.set(beast_http::field::authorization, authorization);
    req.body() = body;
    req.prepare_payload();
    const auto match = router_.match(method, target);
    EXPECT_NE(match.handler, nullptr) << target;
    boost::asio::io_context ioc;
    std::optional<Response> out;
    const RequestContext ctx{boost::asio::ip::make_address("192.0.2.3"), match.route,
                             match.path_rest, 8443};
    boost::asio::co_spawn(ioc, (*match.handler)(req, ctx),
                          [&out](std::exception_ptr e, Response r) {
                            if (e) std::rethrow_exception(e);
                            out = std::move(r);
                          });
    ioc.run();
    return std::move(*out);
  }

  std::string metrics() const {
    return prometheus::TextSerializer().Serialize(registry_.Collect());
  }

  // A pool whose server does not exist: nothing here may reach it.
  store::DatabasePool pool_{[] {
                              store::ConnectionOptions o;
                              o.port = 1;
                              o.connect_timeout = std::chrono::milliseconds(100);
                              return o;
                            }(),
                            store::PoolOptions{1, 10}};
  store::MariadbRegistrationStore store_{pool_};
  prometheus::Registry registry_;
  Router router_;
  std::optional<relay::RegistrationService> service_;
  std::optional<RegistrationEndpoint> endpoint_;
};

TEST_F(RegistrationRoutes, AnswersInTheJsonErrorForm) {
  const json good = {{"customer_id", "dev-abc"},
                     {"registration_key", "rk_x"},
                     {"mailbox", "a@b.example"},
                     {"device_token", std::string(64, 'a')},
                     {"environment", "production"}};
  auto res = call(beast_http::verb::post, "/v1/registrations", good.dump());
  EXPECT_EQ(res.result(), beast_http::status::service_unavailable);
  const json body = json::parse(res.body());
  EXPECT_EQ(body["error"], "not_configured");
  EXPECT_NE(body["message"].get<std::string>().find("registration.secret_file"), std::string::npos);
  EXPECT_EQ(res[beast_http::field::retry_after], "3600");
  EXPECT_EQ(res[beast_http::field::cache_control], "no-store");
  EXPECT_EQ(res[beast_http::field::content_type], "application/json");

  auto big = call(beast_http::verb::post, "/v1/registrations",
                  "{\"mailbox\":\"" + std::string(20000, 'a') + "\"}");
  EXPECT_EQ(big.result(), beast_http::status::payload_too_large);
  EXPECT_EQ(json::parse(big.body())["error"], "too_large");

  auto form = call(beast_http::verb::post, "/v1/registrations", good.dump(), "text/plain");
  EXPECT_EQ(form.result(), beast_http::status::unsupported_media_type);
  auto charset =
      call(beast_http::verb::post, "/v1/registrations", "[]", "Application/JSON; charset=utf-8");
  EXPECT_EQ(charset.result(), beast_http::status::bad_request) << "the type is JSON";
  EXPECT_EQ(json::parse(charset.body())["error"], "invalid_json");

  // Registration ids are no handle any more, whatever follows the path.
  for (const char* target : {"/v1/registrations/5", "/v1/registrations/abc"}) {
    auto del = call(beast_http::verb::delete_, target, "{}");
    EXPECT_EQ(del.result(), beast_http::status::gone) << target;
    EXPECT_EQ(json::parse(del.body())["error"], "registration_ids_gone");
    EXPECT_NE(json::parse(del.body())["message"].get<std::string>().find("/v1/registrations/self"),
              std::string::npos);
  }
  auto self = call(beast_http::verb::delete_, "/v1/registrations/self", "", "", "Bearer x");
  EXPECT_EQ(self.result(), beast_http::status::service_unavailable) << "no region secret here";
  auto patch =
      call(beast_http::verb::patch, "/v1/registrations/self",
           R"({"device_token":"ab","environment":"production"})", "application/json", "Bearer x");
  EXPECT_EQ(patch.result(), beast_http::status::service_unavailable);

  const std::string m = metrics();
  EXPECT_NE(m.find("mailpush_registration_requests_total{result=\"not_configured\"} 3"),
            std::string::npos)
      << m << "POST, DELETE and PATCH";
  EXPECT_NE(m.find("mailpush_registration_requests_total{result=\"too_large\"} 1"),
            std::string::npos);
  EXPECT_NE(m.find("mailpush_registration_requests_total{result=\"created\"} 0"), std::string::npos)
      << "the success series exist from the start";
}

}  // namespace
}  // namespace mp::http
