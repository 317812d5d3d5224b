// graph-sim (tools/graph_sim): its rules, and its Simulator against an in-process HTTPS endpoint
// whose answers each test scripts (status, delay, body): validation, retries with backoff, the
// slow/drop judgement, load runs; what it sends is read back by the relay's own Graph parser.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <functional>
#include <variant>

#include "graph/notification.hpp"
#include "https_client.hpp"
#include "sim_rules.hpp"
#include "simulator.hpp"
#include "test_env.hpp"

namespace graph_sim {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using namespace std::chrono_literals;

// ---- rules -------------------------------------------------------------------------------------

TEST(GraphSimRules, ParsesHttpsUrlsAndRefusesOthers) {
  auto u = parse_https_url("https://localhost:8443/graph/v1/notify/abc");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "localhost");
  EXPECT_EQ(u->port, 8443);
  EXPECT_EQ(u->target, "/graph/v1/notify/abc");
  EXPECT_EQ(u->authority(), "localhost:8443");
  u = parse_https_url("https://listener.example?x=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/?x=1");
  EXPECT_EQ(u->authority(), "listener.example");
  EXPECT_EQ(parse_https_url("https://[::1]:9/p")->host, "[::1]");
  for (const char* bad :
       {"http://localhost/", "https://", "https://u@localhost/", "https://h:0/", "https://h:70000/",
        "https://h:8x/", "https://h/#frag", "ftp://h/", "https://h st/"}) {
    EXPECT_FALSE(parse_https_url(bad)) << bad;
  }
}

TEST(GraphSimRules, PercentEncodesEverythingButUnreservedCharacters) {
  EXPECT_EQ(percent_encode("Validation: a b/c~_.-"), "Validation%3A%20a%20b%2Fc~_.-");
  EXPECT_EQ(percent_encode("\xC3\xA9<"), "%C3%A9%3C");
}

TEST(GraphSimRules, TokensAndIdsAreUniqueAndWellFormed) {
  std::mt19937_64 rng(7);
  const auto a = make_uuid(rng), b = make_uuid(rng);
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos);
  EXPECT_NE(make_validation_token(rng), make_validation_token(rng));
  EXPECT_EQ(iso8601(std::chrono::system_clock::time_point(std::chrono::seconds(1'797'099'825)) +
                    std::chrono::nanoseconds(935'691'300)),
            "2026-12-12T18:23:45.9356913Z");
}

TEST(GraphSimRules, TheRelaysParserReadsWhatTheSimulatorSends) {
  Subscription s;
  s.id = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07";
  s.expiration = "2026-12-12T18:23:45.9356913Z";
  s.client_state = "state-of-device-1";
  s.tenant_id = "84bd8158-6d4d-4958-8b9f-9d6445542f95";
  s.user_id = "622eaaff-0683-4862-9de4-f2ec83c2bd98";
  const auto parsed = mp::graph::parse_notifications(
      notification_body(s, {{"created", "AAMk1"}, {"deleted", "AAMk2"}, {"updated", "AAMk1"}}));
  ASSERT_TRUE(std::holds_alternative<mp::graph::Notifications>(parsed));
  const auto& items = std::get<mp::graph::Notifications>(parsed).items;
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].subscription_id, s.id);
  EXPECT_EQ(items[0].client_state, s.client_state);
  EXPECT_EQ(items[0].tenant_id, s.tenant_id);
  EXPECT_EQ(items[0].expires_at, std::optional<std::int64_t>(1'797'099'825));
  EXPECT_EQ(items[0].change, mp::graph::ChangeType::created);
  EXPECT_EQ(items[0].message_id, "AAMk1");
  EXPECT_EQ(items[1].change, mp::graph::ChangeType::deleted);
  EXPECT_EQ(items[2].change, mp::graph::ChangeType::updated);

  const auto life = mp::graph::parse_notifications(lifecycle_body(s, "subscriptionRemoved"));
  ASSERT_TRUE(std::holds_alternative<mp::graph::Notifications>(life));
  EXPECT_EQ(std::get<mp::graph::Notifications>(life).items.at(0).lifecycle,
            mp::graph::LifecycleEvent::subscription_removed);
  EXPECT_TRUE(is_lifecycle_event("missed"));
  EXPECT_FALSE(is_lifecycle_event("created"));
}

TEST(GraphSimRules, RetryDelaysDoubleWithJitterUpToTheCapAndHonourRetryAfter) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100; ++i) {
    const auto d2 = retry_delay(2, 1000ms, 60'000ms, std::nullopt, rng);
    const auto d4 = retry_delay(4, 1000ms, 60'000ms, std::nullopt, rng);
    EXPECT_GE(d2, 800ms);
    EXPECT_LE(d2, 1200ms);
    EXPECT_GE(d4, 3200ms);
    EXPECT_LE(d4, 4800ms);
    EXPECT_LE(retry_delay(40, 1000ms, 60'000ms, std::nullopt, rng), 60'000ms);
  }
  EXPECT_GE(retry_delay(2, 100ms, 60'000ms, std::chrono::seconds(5), rng), 5000ms);
  EXPECT_EQ(retry_delay(2, 100ms, 2'000ms, std::chrono::seconds(3600), rng), 2000ms);
}

TEST(GraphSimRules, AnEndpointIsJudgedSlowThenDropByItsShareOfLateAnswers) {
  ClassifierLimits limits;
  limits.min_answers = 20;
  EndpointClassifier c(limits);
  auto now = Clock::now();
  for (int i = 0; i < 19; ++i) c.record(now, 5000ms);  // too few answers to judge
  EXPECT_EQ(c.state(now), EndpointClass::ok);
  EndpointClassifier slow(limits);
  for (int i = 0; i < 90; ++i) slow.record(now, 20ms);
  for (int i = 0; i < 10; ++i) slow.record(now, 3500ms);
  EXPECT_EQ(slow.state(now), EndpointClass::ok) << "10 of 100 is not over 10 %";
  slow.record(now, 3500ms);
  EXPECT_EQ(slow.state(now), EndpointClass::slow);
  for (int i = 0; i < 17; ++i) slow.record(now, 10'000ms);
  EXPECT_EQ(slow.state(now), EndpointClass::slow) << "17 of 118 is not over 15 %";
  slow.record(now, 10'000ms);
  EXPECT_EQ(slow.state(now), EndpointClass::drop) << "18 of 119 is over 15 %";
  // The judgement lasts its penalty, then the window has moved on.
  EXPECT_EQ(slow.state(now + limits.penalty - 1ms), EndpointClass::drop);
  EXPECT_EQ(slow.state(now + limits.penalty), EndpointClass::ok);
  slow.record(now + limits.window + 1ms, 5ms);
  EXPECT_EQ(slow.answers(), 1u) << "the old answers left the window";
}

TEST(GraphSimRules, PercentilesOfMicrosecondSamples) {
  std::vector<std::uint32_t> us;
  for (std::uint32_t i = 1; i <= 1000; ++i) us.push_back(i * 1000);
  const auto p = percentiles(us);
  EXPECT_NEAR(p.p50_ms, 500.0, 1.0);
  EXPECT_NEAR(p.p99_ms, 990.0, 1.0);
  EXPECT_EQ(p.max_ms, 1000.0);
  EXPECT_EQ(percentiles({}).p99_ms, 0.0);
}

// ---- the Simulator against a scripted endpoint ----------------------------------------------

struct Scripted {
  unsigned status = 202;
  std::chrono::milliseconds delay{0};
  std::string content_type = "text/plain; charset=utf-8";
  std::optional<std::string> body;  // nullopt: echo the validation token
  std::string retry_after;
};
Scripted answer(unsigned status) {
  Scripted s;
  s.status = status;
  return s;
}

// A TLS HTTP/1.1 endpoint on 127.0.0.1 (the dev listener certificate, for "localhost") on the
// test's own io_context; `script` decides each answer from the target and the request count.
class Endpoint {
 public:
  using Script = std::function<Scripted(const std::string& target, int n)>;
  Endpoint(asio::io_context& io, Script script)
      : io_(io),
        tls_(asio::ssl::context::tls_server),
        acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}),
        script_(std::move(script)) {
    tls_.use_certificate_chain_file(mp::test::dev_tls().cert_chain.string());
    tls_.use_private_key_file(mp::test::dev_tls().key.string(), asio::ssl::context::pem);
    asio::co_spawn(io_, accept(), asio::detached);
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int requests() const { return n_; }
  std::vector<std::string> targets, bodies;

 private:
  asio::awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
      if (ec) co_return;
      asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> serve(asio::ip::tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), tls_);
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, nothrow);
    if (hec) co_return;
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [rec, rn] = co_await http::async_read(stream, buffer, req, nothrow);
      if (rec) co_return;
      const std::string target(req.target());
      targets.push_back(target);
      bodies.push_back(req.body());
      const Scripted s = script_(target, ++n_);
      if (s.delay > 0ms) {
        asio::steady_timer t(io_, s.delay);
        co_await t.async_wait(nothrow);
      }
      http::response<http::string_body> res{static_cast<http::status>(s.status), 11};
      res.set(http::field::content_type, s.content_type);
      if (!s.retry_after.empty()) res.set(http::field::retry_after, s.retry_after);
      std::string body;
      if (s.body) {
        body = *s.body;
      } else if (const auto token = mp::graph::validation_token(target)) {
        body = std::get<std::string>(*token);
      }
      res.body() = body;
      res.keep_alive(true);
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, res, nothrow);
      if (wec) co_return;
    }
  }

  asio::io_context& io_;
  asio::ssl::context tls_;
  asio::ip::tcp::acceptor acceptor_;
  Script script_;
  int n_ = 0;
};

class GraphSimTest : public ::testing::Test {
 protected:
  GraphSimTest() : tls_(asio::ssl::context::tls_client) {
    tls_.load_verify_file(mp::test::dev_tls().ca_cert.string());
    tls_.set_verify_mode(asio::ssl::verify_peer);
    options_.validation_timeout = 300ms;
    options_.answer_timeout = 300ms;
    options_.retry_base = 20ms;
    options_.retry_cap = 100ms;
    options_.max_attempts = 3;
    options_.classifier.slow_after = 100ms;
    options_.classifier.drop_after = 300ms;
    options_.classifier.min_answers = 3;
    options_.slow_delay = 50ms;
  }
  // Runs one coroutine of the test to its end (the endpoint runs on the same io_context).
  template <typename T>
  T run(asio::awaitable<T> a) {
    std::optional<T> out;
    asio::co_spawn(io_, std::move(a), [&](std::exception_ptr e, T v) {
      if (e) std::rethrow_exception(e);
      out = std::move(v);
    });
    while (!out) io_.run_one();
    return std::move(*out);
  }
  void start(Endpoint::Script script) {
    endpoint_.emplace(io_, std::move(script));
    client_.emplace(io_, tls_, std::map<std::string, std::string>{{"localhost", "127.0.0.1"}}, 4);
    sim_.emplace(io_, *client_, options_, 1);
  }
  std::string url(const std::string& path) const {
    return "https://localhost:" + std::to_string(endpoint_->port()) + path;
  }
  Reply subscribe(const std::string& notify, const std::string& lifecycle = "") {
    json request = {{"changeType", "created,deleted"},
                    {"resource", "me/mailFolders('inbox')/messages?$filter=isRead eq false"},
                    {"notificationUrl", notify},
                    {"clientState", "client-state-of-the-test"}};
    if (!lifecycle.empty()) request["lifecycleNotificationUrl"] = lifecycle;
    return run(sim_->create(request));
  }
  json notify(const std::string& id, const json& changes) {
    const json request = {{"changes", changes}};
    return run(sim_->notify(id, request)).body;
  }

  asio::io_context io_;
  asio::ssl::context tls_;
  SimOptions options_;
  std::optional<Endpoint> endpoint_;
  std::optional<HttpsClient> client_;
  std::optional<Simulator> sim_;
};

TEST_F(GraphSimTest, ASubscriptionIsCreatedOnlyWhenBothUrlsEchoTheToken) {
  start([](const std::string& target, int) {
    Scripted s;
    s.status = target.find("/refuse") == 0 ? 404 : 200;
    if (target.find("/wrong") == 0) s.body = "something else";
    if (target.find("/html") == 0) s.content_type = "text/html";
    if (target.find("/late") == 0) s.delay = 400ms;
    return s;
  });
  const Reply ok = subscribe(url("/notify/a"), url("/lifecycle/a"));
  ASSERT_EQ(ok.status, 201) << ok.body.dump();
  EXPECT_EQ(ok.body["lifecycleNotificationUrl"], url("/lifecycle/a"));
  ASSERT_EQ(endpoint_->targets.size(), 2u);
  EXPECT_EQ(endpoint_->targets[0].rfind("/notify/a?validationToken=Validation%3A%20Testing", 0), 0u)
      << endpoint_->targets[0];
  EXPECT_EQ(endpoint_->targets[1].rfind("/lifecycle/a?validationToken=", 0), 0u);
  for (const auto& [path, why] : std::vector<std::pair<std::string, std::string>>{
           {"/refuse", "HTTP 404"},
           {"/wrong", "not the decoded validationToken"},
           {"/html", "not text/plain"},
           {"/late", "no answer within 300 ms"}}) {
    const Reply r = subscribe(url(path));
    EXPECT_EQ(r.status, 400) << path;
    EXPECT_EQ(r.body["error"]["code"], "ValidationError");
    EXPECT_NE(r.body["error"]["detail"].get<std::string>().find(why), std::string::npos)
        << r.body.dump();
  }
  // A good notification URL with a failing lifecycle URL: no subscription either.
  EXPECT_EQ(subscribe(url("/notify/b"), url("/refuse/b")).status, 400);
  EXPECT_EQ(run(sim_->create(json{{"changeType", "created"},
                                  {"resource", "me/messages"},
                                  {"notificationUrl", "http://localhost/x"}}))
                .status,
            400);
  EXPECT_EQ(sim_->list().body["value"].size(), 1u);
  EXPECT_EQ(sim_->stats()["validations"]["failed"], 5);
}

TEST_F(GraphSimTest, ItConnectsToLoopbackAddressesOnly) {
  start([](const std::string&, int) { return Scripted{}; });
  const Reply r = subscribe("https://listener.mailpush.example/graph/v1/notify/x");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["error"]["detail"].get<std::string>().find("no loopback address"),
            std::string::npos)
      << r.body.dump();
  EXPECT_NE(subscribe("https://192.0.2.1/x")
                .body["error"]["detail"]
                .get<std::string>()
                .find("not a loopback address"),
            std::string::npos);
  EXPECT_EQ(endpoint_->requests(), 0);
}

TEST_F(GraphSimTest, FailedDeliveriesAreRetriedWithBackoffUntilAccepted) {
  start([](const std::string& target, int n) {
    Scripted s;
    if (target.find("validationToken") != std::string::npos) return answer(200);
    s.status = n <= 3 ? 503 : 202;  // the validation, then two 503s
    if (n == 2) s.retry_after = "0";
    return s;
  });
  const Reply sub = subscribe(url("/notify/r"));
  ASSERT_EQ(sub.status, 201);
  const std::string id = sub.body["id"];
  const json d = notify(id, json::array({{{"changeType", "created"}, {"id", "m1"}}}));
  EXPECT_EQ(d["outcome"], "delivered") << d.dump();
  EXPECT_EQ(d["attempts"], 3);
  EXPECT_EQ(d["last_status"], 202);
  ASSERT_EQ(endpoint_->bodies.size(), 4u);
  EXPECT_EQ(endpoint_->bodies[1], endpoint_->bodies[3]) << "the same batch, sent again";
  const json stats = sim_->stats();
  EXPECT_EQ(stats["retries"], 2);
  EXPECT_EQ(stats["answers"]["503"], 2);
  const json list = sim_->list().body;
  EXPECT_EQ(list["value"][0]["items_sent"], 1);
  EXPECT_EQ(list["value"][0]["items_accepted"], 1);
}

TEST_F(GraphSimTest, ItGivesUpAfterItsAttemptsAndCountsWhatWasNotAccepted) {
  start([](const std::string& target, int) {
    return target.find("validationToken") != std::string::npos ? answer(200) : answer(500);
  });
  const std::string id = subscribe(url("/notify/g")).body["id"];
  const json d =
      notify(id, json::array({{{"changeType", "created"}}, {{"changeType", "deleted"}}}));
  EXPECT_EQ(d["outcome"], "given_up") << d.dump();
  EXPECT_EQ(d["attempts"], 3);
  const json list = sim_->list().body;
  EXPECT_EQ(list["value"][0]["items_sent"], 2);
  EXPECT_EQ(list["value"][0]["items_accepted"], 0);
  EXPECT_EQ(sim_->deliveries(0, 10)["records"][0]["outcome"], "given_up");
}

TEST_F(GraphSimTest, LateAnswersMakeTheEndpointSlowThenDroppedAsGraphJudgesIt) {
  std::chrono::milliseconds delay = 150ms;  // over slow_after (100 ms)
  start([&](const std::string& target, int) {
    Scripted s = answer(target.find("validationToken") != std::string::npos ? 200u : 202u);
    if (s.status == 202) s.delay = delay;
    return s;
  });
  const std::string id = subscribe(url("/notify/s")).body["id"];
  const json one = json::array({{{"changeType", "created"}}});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(notify(id, one)["outcome"], "delivered");
  json stats = sim_->stats();
  EXPECT_EQ(stats["over_3s"], 3);
  EXPECT_EQ(stats["endpoints"]["localhost:" + std::to_string(endpoint_->port())]["class"], "slow")
      << stats.dump();
  // Now past the drop limit: each attempt times out (300 ms) and is retried, then given up.
  delay = 500ms;
  const json late = notify(id, one);
  EXPECT_EQ(late["outcome"], "given_up") << late.dump();
  EXPECT_EQ(late["last_error"], "timeout");
  stats = sim_->stats();
  EXPECT_EQ(stats["answers"]["timeout"], 3);
  EXPECT_EQ(stats["endpoints"]["localhost:" + std::to_string(endpoint_->port())]["class"], "drop");
  // A dropped endpoint's notifications are not even sent.
  const int before = endpoint_->requests();
  EXPECT_EQ(notify(id, one)["outcome"], "dropped");
  EXPECT_EQ(endpoint_->requests(), before);
}

TEST_F(GraphSimTest, ALoadRunSpreadsNewMessagesOverTheSubscriptionsAndCountsThem) {
  start([](const std::string& target, int) {
    return answer(target.find("validationToken") != std::string::npos ? 200u : 202u);
  });
  const json many = {{"subscriptions", json::array({{{"changeType", "created"},
                                                     {"resource", "me/messages"},
                                                     {"notificationUrl", url("/n/1")}},
                                                    {{"changeType", "created"},
                                                     {"resource", "me/messages"},
                                                     {"notificationUrl", url("/n/2")}},
                                                    {{"changeType", "created"},
                                                     {"resource", "me/messages"},
                                                     {"notificationUrl", url("/refuse")},
                                                     {"clientState", std::string(129, 'x')}}})}};
  const Reply created = run(sim_->create_many(many));
  EXPECT_EQ(created.body["failed"].size(), 1u) << created.body.dump();
  const json spec = {{"rate", 400}, {"seconds", 1}, {"items_per_batch", 2}};
  const Reply r = run(sim_->load(spec));
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["batches"], 400);
  EXPECT_EQ(r.body["items"], 800);
  EXPECT_EQ(r.body["delivered"], 400);
  EXPECT_EQ(r.body["answers"]["202"], 400);
  EXPECT_EQ(r.body["over_3s"], 0);
  std::uint64_t sent = 0, accepted = 0;
  const json list = sim_->list().body;  // named: a loop over a temporary's member dangles
  for (const auto& s : list["value"]) {
    sent += s["items_sent"].get<std::uint64_t>();
    accepted += s["items_accepted"].get<std::uint64_t>();
    EXPECT_GT(s["items_sent"].get<std::uint64_t>(), 200u) << "both subscriptions got their share";
  }
  EXPECT_EQ(sent, 800u);
  EXPECT_EQ(accepted, 800u);
  // Every message id is new: nothing the relay would take for a resend.
  std::set<std::string> ids;
  for (std::size_t i = 2; i < endpoint_->bodies.size(); ++i) {
    const auto parsed = mp::graph::parse_notifications(endpoint_->bodies[i]);
    for (const auto& item : std::get<mp::graph::Notifications>(parsed).items) {
      ids.insert(item.message_id);
    }
  }
  EXPECT_EQ(ids.size(), 800u);
  // Closed loop: 4 senders back to back for a second; every batch ends delivered.
  const Reply closed =
      run(sim_->load(json{{"mode", "closed"}, {"concurrency", 4}, {"seconds", 1}}));
  ASSERT_EQ(closed.status, 200) << closed.body.dump();
  EXPECT_GT(closed.body["delivered"].get<int>(), 50) << closed.body.dump();
  EXPECT_EQ(closed.body["delivered"], closed.body["batches"]);
  EXPECT_EQ(closed.body["still_in_flight"], 0);
  EXPECT_GT(closed.body["delivered_per_s"].get<double>(), 50.0);
  // Unknown keys are ignored; a bad value is refused.
  EXPECT_EQ(run(sim_->load(json{{"rate", 1}, {"seconds", 1}, {"nonsense", true}})).status, 200);
  EXPECT_EQ(run(sim_->load(json{{"rate", 0}})).status, 400);
  EXPECT_EQ(run(sim_->load(json{{"mode", "burst"}})).status, 400);
}

}  // namespace
}  // namespace graph_sim
