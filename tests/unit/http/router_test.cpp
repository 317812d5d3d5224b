// Tests of src/http/router: exact and prefix routes, 405 method lists and the reply builders.
#include "http/router.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/http/field.hpp>
#include <string>

namespace mp::http {
namespace {

namespace asio = boost::asio;
using beast_http::verb;

// A handler that answers with its own name, so a test can tell which one `match` picked.
Handler named(std::string name) {
  return [name](const Request& req, const RequestContext&) -> asio::awaitable<Response> {
    co_return make_response(req, beast_http::status::ok, "text/plain", name);
  };
}

// Runs a matched handler to completion and returns its body.
std::string call(const Handler& handler, const RequestContext& ctx = {}) {
  asio::io_context ioc;
  Request req{verb::get, "/", 11};
  auto future = asio::co_spawn(ioc, handler(req, ctx), asio::use_future);
  ioc.run();
  return future.get().body();
}

Router make_router() {
  Router r;
  r.add(verb::get, "/healthz", "healthz", named("healthz-get"));
  r.add(verb::get, "/metrics", "metrics", named("metrics-get"));
  r.add(verb::put, "/metrics", "metrics", named("metrics-put"));
  r.add_prefix(verb::post, "/ews/notify/", "ews_notify", named("ews-post"));
  return r;
}

TEST(Router, ExactPathMatchesItsMethod) {
  const Router r = make_router();
  const auto m = r.match(verb::get, "/healthz");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.route, "healthz");
  EXPECT_TRUE(m.path_rest.empty());
  EXPECT_TRUE(m.allow.empty());
  EXPECT_EQ(call(*m.handler), "healthz-get");
}

TEST(Router, PicksTheHandlerOfTheRequestedMethod) {
  const Router r = make_router();
  const auto get = r.match(verb::get, "/metrics");
  const auto put = r.match(verb::put, "/metrics");
  ASSERT_NE(get.handler, nullptr);
  ASSERT_NE(put.handler, nullptr);
  EXPECT_EQ(call(*get.handler), "metrics-get");
  EXPECT_EQ(call(*put.handler), "metrics-put");
}

TEST(Router, ExactPathDoesNotMatchLongerOrShorterPaths) {
  const Router r = make_router();
  for (const char* target : {"/healthz/", "/healthzz", "/health", "/", "", "/HEALTHZ"}) {
    const auto m = r.match(verb::get, target);
    EXPECT_EQ(m.handler, nullptr) << target;
    EXPECT_EQ(m.route, "unmatched") << target;
    EXPECT_TRUE(m.allow.empty()) << target;
  }
}

TEST(Router, QueryStringIsIgnored) {
  const Router r = make_router();
  const auto m = r.match(verb::get, "/healthz?verbose=1&x=/metrics");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.route, "healthz");
  const auto bare = r.match(verb::get, "/healthz?");
  EXPECT_NE(bare.handler, nullptr);
  // The query cannot make a path match that would not match without it.
  EXPECT_EQ(r.match(verb::get, "/?/healthz").handler, nullptr);
}

TEST(Router, PrefixRouteGivesTheRestOfThePath) {
  const Router r = make_router();
  const auto m = r.match(verb::post, "/ews/notify/s3cr3t-token");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.route, "ews_notify");
  EXPECT_EQ(m.path_rest, "s3cr3t-token");
  EXPECT_EQ(call(*m.handler), "ews-post");
}

TEST(Router, PrefixRouteRestExcludesTheQuery) {
  const Router r = make_router();
  const auto m = r.match(verb::post, "/ews/notify/abc/def?x=1");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.path_rest, "abc/def");
  const auto empty_rest = r.match(verb::post, "/ews/notify/");
  ASSERT_NE(empty_rest.handler, nullptr);
  EXPECT_TRUE(empty_rest.path_rest.empty());
}

TEST(Router, PrefixRouteNeedsTheWholePrefix) {
  const Router r = make_router();
  EXPECT_EQ(r.match(verb::post, "/ews/notify").handler, nullptr);
  EXPECT_EQ(r.match(verb::post, "/ews/notif").handler, nullptr);
  EXPECT_EQ(r.match(verb::post, "/x/ews/notify/abc").handler, nullptr);
}

TEST(Router, WrongMethodListsTheAllowedOnes) {
  const Router r = make_router();
  const auto m = r.match(verb::post, "/healthz");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_EQ(m.allow, "GET");
  EXPECT_EQ(m.route, "healthz");

  const auto two = r.match(verb::delete_, "/metrics?x=1");
  EXPECT_EQ(two.handler, nullptr);
  EXPECT_EQ(two.allow, "GET, PUT");
  EXPECT_EQ(two.route, "metrics");

  const auto prefix = r.match(verb::get, "/ews/notify/abc");
  EXPECT_EQ(prefix.handler, nullptr);
  EXPECT_EQ(prefix.allow, "POST");
  EXPECT_EQ(prefix.route, "ews_notify");
}

TEST(Router, UnknownPathIsUnmatchedWithoutAllow) {
  const Router r = make_router();
  const auto m = r.match(verb::get, "/nope");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_EQ(m.route, "unmatched");
  EXPECT_TRUE(m.path_rest.empty());
  EXPECT_TRUE(m.allow.empty());
  const Router empty;
  EXPECT_EQ(empty.match(verb::get, "/").handler, nullptr);
  EXPECT_EQ(empty.match(verb::get, "/").route, "unmatched");
}

TEST(Router, LaterRouteOfTheRightMethodBeatsAnEarlierWrongMethod) {
  Router r;
  r.add(verb::get, "/x", "x_get", named("get"));
  r.add(verb::post, "/x", "x_post", named("post"));
  const auto m = r.match(verb::post, "/x");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.route, "x_post");
  EXPECT_TRUE(m.allow.empty());
  EXPECT_EQ(call(*m.handler), "post");
}

TEST(Responses, MakeResponseSetsTypeCacheLengthAndKeepAlive) {
  Request keep{verb::get, "/", 11};
  const auto res = make_response(keep, beast_http::status::accepted, "text/plain", "hello");
  EXPECT_EQ(res.result(), beast_http::status::accepted);
  EXPECT_EQ(res.version(), 11u);
  EXPECT_EQ(res[beast_http::field::content_type], "text/plain");
  EXPECT_EQ(res[beast_http::field::cache_control], "no-store");
  EXPECT_EQ(res[beast_http::field::content_length], "5");
  EXPECT_EQ(res.body(), "hello");
  EXPECT_TRUE(res.keep_alive());

  Request close{verb::get, "/", 11};
  close.keep_alive(false);
  EXPECT_FALSE(make_response(close, beast_http::status::ok, "text/plain", "").keep_alive());

  Request http10{verb::get, "/", 10};
  const auto old = make_response(http10, beast_http::status::ok, "text/plain", "x");
  EXPECT_EQ(old.version(), 10u);
  EXPECT_FALSE(old.keep_alive());
}

TEST(Responses, JsonResponseIsApplicationJson) {
  Request req{verb::post, "/", 11};
  const auto res = json_response(req, beast_http::status::bad_request, R"({"error":"x"})");
  EXPECT_EQ(res.result(), beast_http::status::bad_request);
  EXPECT_EQ(res[beast_http::field::content_type], "application/json");
  EXPECT_EQ(res[beast_http::field::cache_control], "no-store");
  EXPECT_EQ(res.body(), R"({"error":"x"})");
  EXPECT_EQ(res[beast_http::field::content_length], "13");
}

}  // namespace
}  // namespace mp::http
