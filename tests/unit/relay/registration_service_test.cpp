// Tests of RegistrationService on the real MariaDB through a DatabasePool: listener URLs and
// their stored hashes, authentication without an oracle, customer states, the rate limit spent
// only by authenticated calls, unregister reaching the listener's cache, and the 503 cases.
#include "relay/registration_service.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <optional>

#include "common/crypto.hpp"
#include "store/migrations.hpp"
#include "test_env.hpp"

namespace mp::relay {
namespace {

const std::string kToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

// Runs one coroutine of the service to completion.
template <class T>
T run(boost::asio::awaitable<T> work) {
  boost::asio::io_context ioc;
  std::optional<T> out;
  boost::asio::co_spawn(ioc, std::move(work), [&out](std::exception_ptr e, T value) {
    if (e) std::rethrow_exception(e);
    out = std::move(value);
  });
  ioc.run();
  EXPECT_TRUE(out.has_value());
  return std::move(*out);
}

keys::RegionSecret make_secret() {
  auto s = keys::RegionSecret::from_text(
      "region-secret " + std::string("c2VjcmV0LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3ODk=") + "\n");
  EXPECT_TRUE(s.ok());
  return std::move(s).value();
}

class RegistrationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::Connection conn(db.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(store::migrate(conn).ok());
    customer_row = add_customer(conn, customer_id, "rk_right");
    add_customer(conn, "tst-disabled00000000000", "rk_disabled", "disabled");
  }

  static std::int64_t add_customer(store::Connection& conn, const std::string& id,
                                   const std::string& key, const std::string& state = "active") {
    const Bytes hash = sha384(key);
    EXPECT_TRUE(
        conn.execute(
                "INSERT INTO customers (customer_id, registration_key_hash, "
                "admin_key_hash, state) VALUES (?, ?, ?, ?)",
                {store::Value{id}, store::Value{store::Blob{std::string(hash.begin(), hash.end())}},
                 store::Value{store::Blob{hex_encode(random_bytes(24))}}, store::Value{state}})
            .ok());
    auto rows = conn.query("SELECT id FROM customers WHERE customer_id = ?", {store::Value{id}});
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : 0;
  }

  RegistrationService service(std::uint32_t per_minute = 600, bool with_secret = true,
                              std::uint16_t port = 443) {
    RegistrationOptions o;
    o.region = "test";
    o.customer_id_prefix = "tst";
    o.listener_host = "listener.test.example";
    o.listener_port = port;
    o.status_frequency_minutes = 20;
    o.per_customer_per_minute = per_minute;
    o.other_regions = {{"use1", "register.use1.mailpush.example"}};
    return RegistrationService(std::move(o), pool, with_secret ? &secret : nullptr, &cache);
  }

  RegisterRequest request(const std::string& key = "rk_right") const {
    RegisterRequest r;
    r.customer_id = customer_id;
    r.registration_key = key;
    r.mailbox = "alice@example.com";
    r.device_token = kToken;
    r.environment = "production";
    return r;
  }

  Outcome<Registered> register_with(RegistrationService& s, const RegisterRequest& r,
                                    std::uint16_t local_port = 8443) {
    return run(s.register_device(r, Caller{"192.0.2.1", local_port}));
  }

  static const Registered& ok(const Outcome<Registered>& o) {
    static const Registered none;
    if (const auto* refused = std::get_if<RegistrationRefusal>(&o)) {
      ADD_FAILURE() << refused->code << ": " << refused->message;
      return none;
    }
    return std::get<Registered>(o);
  }
  static RegistrationRefusal refused(const auto& o) {
    if (const auto* r = std::get_if<RegistrationRefusal>(&o)) return *r;
    ADD_FAILURE() << "accepted";
    return {};
  }

  std::string stored_hash(std::int64_t id) {
    store::Connection conn(db.options());
    EXPECT_TRUE(conn.connect().ok());
    auto rows =
        conn.query("SELECT secret_hash FROM registrations WHERE id = ?", {store::Value{id}});
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : "";
  }

  test::ScratchDatabase db;
  store::DatabasePool pool{db.options(), store::PoolOptions{2, 100}};
  keys::RegionSecret secret = make_secret();
  RegistrationCache cache{1000};
  const std::string customer_id = "tst-abcdefghij0123456789";
  std::int64_t customer_row = 0;
};

TEST_F(RegistrationServiceTest, TheListenerUrlIsStableAndOnlyItsHashIsStored) {
  auto s = service();
  const Registered first = ok(register_with(s, request()));
  EXPECT_EQ(first.change, store::RegistrationChange::created);
  EXPECT_EQ(first.customer_id, customer_id);
  EXPECT_EQ(first.status_frequency_minutes, 20u);
  EXPECT_EQ(first.device, "a1b2c3d4…(64)");
  const std::string prefix = "https://listener.test.example/ews/v1/notify/";
  ASSERT_EQ(first.listener_url.rfind(prefix, 0), 0u) << first.listener_url;
  const std::string callback_secret = first.listener_url.substr(prefix.size());
  EXPECT_EQ(callback_secret.size(), 43u);
  const Bytes hash = sha384(callback_secret);
  EXPECT_EQ(stored_hash(first.registration_id), std::string(hash.begin(), hash.end()));

  const Registered again = ok(register_with(s, request()));
  EXPECT_EQ(again.change, store::RegistrationChange::unchanged);
  EXPECT_EQ(again.listener_url, first.listener_url);
  EXPECT_EQ(again.registration_id, first.registration_id);
}

TEST_F(RegistrationServiceTest, PortZeroMeansThePortTheRequestCameIn) {
  auto s = service(600, true, 0);
  const Registered r = ok(register_with(s, request(), 40123));
  EXPECT_EQ(r.listener_url.rfind("https://listener.test.example:40123/ews/v1/notify/", 0), 0u)
      << r.listener_url;
}

TEST_F(RegistrationServiceTest, AWrongKeyAndAnUnknownCustomerGetTheSameAnswer) {
  auto s = service();
  const auto wrong = refused(register_with(s, request("rk_wrong")));
  auto unknown_request = request();
  unknown_request.customer_id = "tst-zzzzzzzzzz0000000000";
  const auto unknown = refused(register_with(s, unknown_request));
  EXPECT_EQ(wrong.kind, RefusalKind::unauthorized);
  EXPECT_EQ(unknown.kind, RefusalKind::unauthorized);
  EXPECT_EQ(wrong.code, unknown.code);
  EXPECT_EQ(wrong.message, unknown.message);
  EXPECT_EQ(wrong.message.find("rk_"), std::string::npos);

  auto empty = request("");
  EXPECT_EQ(refused(register_with(s, empty)).field, "registration_key");
}

TEST_F(RegistrationServiceTest, DisabledCustomersAndOtherRegionsAreRefused) {
  auto s = service();
  auto disabled = request("rk_disabled");
  disabled.customer_id = "tst-disabled00000000000";
  const auto r = refused(register_with(s, disabled));
  EXPECT_EQ(r.kind, RefusalKind::forbidden);
  EXPECT_EQ(r.code, "customer_disabled");

  auto elsewhere = request();
  elsewhere.customer_id = "use1-abcdefghij0123456789";
  const auto w = refused(register_with(s, elsewhere));
  EXPECT_EQ(w.kind, RefusalKind::wrong_region);
  EXPECT_EQ(w.region_host, "register.use1.mailpush.example");
}

TEST_F(RegistrationServiceTest, OnlyAuthenticatedCallsSpendTheCustomersLimit) {
  auto s = service(3);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(refused(register_with(s, request("rk_guess"))).kind, RefusalKind::unauthorized);
  }
  for (int i = 0; i < 3; ++i) ok(register_with(s, request()));
  const auto limited = refused(register_with(s, request()));
  EXPECT_EQ(limited.kind, RefusalKind::rate_limited);
  EXPECT_GE(limited.retry_after.count(), 1);
  EXPECT_LE(limited.retry_after.count(), 20);
  // Refused before the database from now on, whatever the key.
  EXPECT_EQ(refused(register_with(s, request("rk_guess"))).kind, RefusalKind::rate_limited);
}

TEST_F(RegistrationServiceTest, UnregisterIsAnsweredUnsubscribeByThisInstanceAtOnce) {
  auto s = service();
  const Registered r = ok(register_with(s, request()));
  const std::string secret_text =
      r.listener_url.substr(r.listener_url.find("/notify/") + std::string("/notify/").size());
  const Bytes hash = sha384(secret_text);
  const std::string key(hash.begin(), hash.end());
  // The listener saw it already.
  cache.put(key, CachedRegistration{r.registration_id, 1, std::make_shared<CustomerView>(), {}});
  ASSERT_EQ(cache.get(key).hit, RegistrationCache::Hit::found);

  UnregisterRequest u{customer_id, "rk_right", r.registration_id};
  auto done = run(s.unregister(u, Caller{"192.0.2.1", 8443}));
  ASSERT_TRUE(std::holds_alternative<Unregistered>(done)) << refused(done).message;
  EXPECT_EQ(cache.get(key).hit, RegistrationCache::Hit::absent);

  auto again = run(s.unregister(u, Caller{"192.0.2.1", 8443}));
  EXPECT_EQ(refused(again).kind, RefusalKind::not_found);
  u.registration_key = "rk_wrong";
  EXPECT_EQ(refused(run(s.unregister(u, Caller{}))).kind, RefusalKind::unauthorized);

  // Registered again: a new URL; the old one stays unknown.
  const Registered back = ok(register_with(s, request()));
  EXPECT_EQ(back.change, store::RegistrationChange::reactivated);
  EXPECT_EQ(back.registration_id, r.registration_id);
  EXPECT_NE(back.listener_url, r.listener_url);
  EXPECT_EQ(cache.get(key).hit, RegistrationCache::Hit::absent);
}

TEST_F(RegistrationServiceTest, NoRegionSecretOrNoDatabaseIs503) {
  auto none = service(600, false);
  const auto r = refused(register_with(none, request()));
  EXPECT_EQ(r.kind, RefusalKind::unavailable);
  EXPECT_EQ(r.code, "not_configured");
  EXPECT_NE(r.message.find("registration.secret_file"), std::string::npos);

  auto options = db.options();
  options.port = test::free_tcp_port();  // nothing listens there
  options.connect_timeout = std::chrono::milliseconds(500);
  store::DatabasePool down(options, store::PoolOptions{1, 10});
  RegistrationOptions o;
  o.customer_id_prefix = "tst";
  o.listener_host = "listener.test.example";
  RegistrationService s(o, down, &secret, &cache);
  const auto d = refused(register_with(s, request()));
  EXPECT_EQ(d.kind, RefusalKind::unavailable);
  EXPECT_EQ(d.code, "unavailable");
  EXPECT_GT(d.retry_after.count(), 0);
}

}  // namespace
}  // namespace mp::relay
