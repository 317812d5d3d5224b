// Tests of RegistrationService on the real MariaDB through MariadbRegistrationStore (the rules
// of the service alone are in registration_service_test.cpp, against a fake): capabilities and
// their stored hashes, refresh / replace / move / unregister by capability (and one answer for
// every capability that is not right), authentication without an oracle, customer states, the
// rate limits (per customer, spent only by authenticated calls; refused credentials per
// address), the listener's cache, and the 503 cases.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <optional>

#include "common/crypto.hpp"
#include "relay/registration_service.hpp"
#include "store/mariadb_registration_store.hpp"
#include "store/migrations.hpp"
#include "test_env.hpp"
#include "test_registration_service.hpp"

namespace mp::relay {
namespace {

using test::kToken;
using test::make_secret;
using test::run;

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
                              std::uint16_t port = 443, std::uint32_t refusals_per_minute = 60) {
    RegistrationOptions o;
    o.region = "test";
    o.customer_id_prefix = "tst";
    o.listener_host = "listener.test.example";
    o.listener_port = port;
    o.status_frequency_minutes = 20;
    o.per_customer_per_minute = per_minute;
    o.other_regions = {{"use1", "register.use1.mailpush.example"}};
    o.refusals_per_address_per_minute = refusals_per_minute;
    return RegistrationService(std::move(o), registrations, with_secret ? &secret : nullptr,
                               &cache);
  }

  RegisterRequest request(const std::string& key = "rk_right") const {
    return test::register_request(customer_id, key, "alice@example.com");
  }

  Outcome<Registered> register_with(RegistrationService& s, const RegisterRequest& r,
                                    std::uint16_t local_port = 8443) {
    return run(s.register_device(r, Caller{"192.0.2.1", local_port, ""}));
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

  mp::test::ScratchDatabase db;
  store::DatabasePool pool{db.options(), store::PoolOptions{2, 100}};
  store::MariadbRegistrationStore registrations{pool};
  keys::RegionSecret secret = make_secret();
  RegistrationCache cache{1000};
  const std::string customer_id = "tst-abcdefghij0123456789";
  std::int64_t customer_row = 0;
};

TEST_F(RegistrationServiceTest, TheCapabilityIsTheUrlsSecretAndOnlyItsHashIsStored) {
  auto s = service();
  const Registered first = ok(register_with(s, request()));
  EXPECT_EQ(first.change, store::CapabilityChange::created);
  EXPECT_EQ(first.customer_id, customer_id);
  EXPECT_EQ(first.status_frequency_minutes, 20u);
  EXPECT_EQ(first.device, "a1b2c3d4…(64)");
  const std::string prefix = "https://listener.test.example/ews/v1/notify/";
  EXPECT_EQ(first.listener_url, prefix + first.capability);
  EXPECT_EQ(first.capability.size(), keys::kCapabilityChars);
  EXPECT_TRUE(secret.issued(first.capability));
  EXPECT_EQ(capability_form(secret, first.capability), CapabilityForm::issued);
  const Bytes hash = sha384(first.capability);
  EXPECT_EQ(stored_hash(first.registration_id), std::string(hash.begin(), hash.end()));

  // Refreshed with its capability: the same URL.
  auto refresh = request();
  refresh.capability = first.capability;
  const Registered again = ok(register_with(s, refresh));
  EXPECT_EQ(again.change, store::CapabilityChange::unchanged);
  EXPECT_EQ(again.listener_url, first.listener_url);

  // Repeated without it, or with a made-up one: never the existing URL. A new capability, and
  // the old one is dead for this instance's listener at once.
  const std::string key(hash.begin(), hash.end());
  cache.put(key,
            CachedRegistration{first.registration_id, 1, std::make_shared<CustomerView>(), {}});
  for (const std::optional<std::string>& presented :
       {std::optional<std::string>{}, std::optional<std::string>{secret.issue_capability()},
        std::optional<std::string>{"not-a-capability"}}) {
    auto repeat = request();
    repeat.capability = presented;
    const Registered other = ok(register_with(s, repeat));
    EXPECT_EQ(other.change, store::CapabilityChange::replaced);
    EXPECT_NE(other.listener_url, first.listener_url);
    EXPECT_NE(other.capability, first.capability);
  }
  EXPECT_EQ(cache.get(key).hit, RegistrationCache::Hit::absent);
}

TEST_F(RegistrationServiceTest, CapabilityFormsAreDecidedWithoutTheDatabase) {
  const std::string issued = secret.issue_capability();
  EXPECT_EQ(capability_form(secret, issued), CapabilityForm::issued);
  std::string forged = issued;
  forged[40] = forged[40] == 'A' ? 'B' : 'A';
  EXPECT_EQ(capability_form(secret, forged), CapabilityForm::refused);
  EXPECT_EQ(capability_form(make_secret(), issued), CapabilityForm::issued);
  EXPECT_EQ(capability_form(secret, secret.callback_secret(7, 0)), CapabilityForm::legacy);
  EXPECT_EQ(capability_form(secret, std::string(43, '!')), CapabilityForm::refused);
  EXPECT_EQ(capability_form(secret, ""), CapabilityForm::refused);
  EXPECT_EQ(capability_form(secret, std::string(400, 'a')), CapabilityForm::refused);
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

TEST_F(RegistrationServiceTest, OnlyTheCapabilityUnregistersAndItIsUnsubscribedHereAtOnce) {
  auto s = service();
  const Registered r = ok(register_with(s, request()));
  const Bytes hash = sha384(r.capability);
  const std::string key(hash.begin(), hash.end());
  // The listener saw it already.
  cache.put(key, CachedRegistration{r.registration_id, 1, std::make_shared<CustomerView>(), {}});
  ASSERT_EQ(cache.get(key).hit, RegistrationCache::Hit::found);

  // Missing, made-up, issued-but-unknown and legacy-shaped capabilities: one answer.
  std::vector<RegistrationRefusal> answers;
  for (const std::string& wrong : {std::string(), std::string("x"), secret.issue_capability(),
                                   secret.callback_secret(r.registration_id, 0)}) {
    answers.push_back(refused(run(s.unregister({wrong}, Caller{"192.0.2.1", 8443, ""}))));
  }
  for (const auto& a : answers) {
    EXPECT_EQ(a.kind, RefusalKind::not_found);
    EXPECT_EQ(a.code, answers[0].code);
    EXPECT_EQ(a.message, answers[0].message);
  }
  EXPECT_EQ(cache.get(key).hit, RegistrationCache::Hit::found) << "nothing ended";

  auto done = run(s.unregister({r.capability}, Caller{"192.0.2.1", 8443, ""}));
  ASSERT_TRUE(std::holds_alternative<Unregistered>(done)) << refused(done).message;
  EXPECT_EQ(std::get<Unregistered>(done).customer_id, customer_id);
  EXPECT_EQ(cache.get(key).hit, RegistrationCache::Hit::absent);
  EXPECT_EQ(refused(run(s.unregister({r.capability}, Caller{"192.0.2.1", 8443, ""}))).kind,
            RefusalKind::not_found);

  // Registered again, even presenting the ended capability: a new URL.
  auto back_request = request();
  back_request.capability = r.capability;
  const Registered back = ok(register_with(s, back_request));
  EXPECT_EQ(back.change, store::CapabilityChange::created);
  EXPECT_NE(back.listener_url, r.listener_url);
  EXPECT_EQ(cache.get(key).hit, RegistrationCache::Hit::absent);
}

TEST_F(RegistrationServiceTest, OnlyTheCapabilityMovesARegistrationToANewToken) {
  auto s = service();
  const Registered r = ok(register_with(s, request()));
  const std::string new_token(64, 'c');
  const Caller caller{"192.0.2.1", 8443, ""};
  EXPECT_EQ(refused(run(s.move({secret.issue_capability(), new_token, "production"}, caller))).kind,
            RefusalKind::not_found)
      << "the old token and the key in the app move nothing";
  EXPECT_EQ(refused(run(s.move({r.capability, "zz", "production"}, caller))).field, "device_token");
  EXPECT_EQ(refused(run(s.move({r.capability, new_token, "staging"}, caller))).field,
            "environment");
  auto done = run(s.move({r.capability, new_token, "production"}, caller));
  ASSERT_TRUE(std::holds_alternative<Moved>(done)) << refused(done).message;
  EXPECT_TRUE(std::get<Moved>(done).moved);
  EXPECT_EQ(std::get<Moved>(done).customer_id, customer_id);
  EXPECT_EQ(std::get<Moved>(done).device, "cccccccc…(64)");
  auto again = run(s.move({r.capability, new_token, "production"}, caller));
  ASSERT_TRUE(std::holds_alternative<Moved>(again));
  EXPECT_FALSE(std::get<Moved>(again).moved);

  // The new token refreshing with the capability keeps the URL.
  auto refresh = request();
  refresh.device_token = new_token;
  refresh.capability = r.capability;
  const Registered kept = ok(register_with(s, refresh));
  EXPECT_EQ(kept.change, store::CapabilityChange::unchanged);
  EXPECT_EQ(kept.listener_url, r.listener_url);
}

TEST_F(RegistrationServiceTest, RefusedCredentialsAreLimitedPerAddress) {
  auto s = service(600, true, 443, /*refusals_per_minute=*/3);
  const Caller guesser{"198.51.100.7", 8443, ""};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(refused(run(s.register_device(request("rk_guess"), guesser))).kind,
              RefusalKind::unauthorized);
  }
  const auto limited = refused(run(s.register_device(request("rk_guess"), guesser)));
  EXPECT_EQ(limited.kind, RefusalKind::rate_limited);
  EXPECT_GT(limited.retry_after.count(), 0);
  // The limit is the address's: capabilities from it wait too, other addresses do not.
  EXPECT_EQ(refused(run(s.unregister({secret.issue_capability()}, guesser))).kind,
            RefusalKind::rate_limited);
  ok(register_with(s, request()));
  // Made-up capabilities count as well.
  const Caller prober{"198.51.100.8", 8443, ""};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(refused(run(s.unregister({"made-up"}, prober))).kind, RefusalKind::not_found);
  }
  EXPECT_EQ(refused(run(s.unregister({"made-up"}, prober))).kind, RefusalKind::rate_limited);
}

TEST_F(RegistrationServiceTest, TheCustomersLimitNeverRefusesARefresh) {
  // The key is in every copy of the app: anyone can spend the customer's calls. An app that holds
  // its capability keeps its registration whatever others do.
  auto s = service(2);
  const Registered r = ok(register_with(s, request()));
  auto other = request();
  other.mailbox = "bob@example.com";
  ok(register_with(s, other));
  EXPECT_EQ(refused(register_with(s, request())).kind, RefusalKind::rate_limited)
      << "a repeat without the capability is a new registration: limited";
  auto refresh = request();
  refresh.capability = r.capability;
  for (int i = 0; i < 3; ++i) {
    const Registered again = ok(register_with(s, refresh));
    EXPECT_EQ(again.change, store::CapabilityChange::unchanged);
  }
  // A URL from before capabilities is no handle: limited like a new registration.
  refresh.capability = secret.callback_secret(r.registration_id, 0);
  EXPECT_EQ(refused(register_with(s, refresh)).kind, RefusalKind::rate_limited);
  // Nor is another registration's capability: the exemption is for a real refresh only.
  auto borrowed = request();
  borrowed.mailbox = "carol@example.com";
  borrowed.capability = r.capability;
  EXPECT_EQ(refused(register_with(s, borrowed)).kind, RefusalKind::rate_limited);
  EXPECT_EQ(refused(register_with(s, borrowed)).code, "rate_limited");
  refresh.capability = r.capability;
  EXPECT_EQ(ok(register_with(s, refresh)).change, store::CapabilityChange::unchanged)
      << "the real refresh still goes through";
}

TEST_F(RegistrationServiceTest, RefusalsCountPerLimitKeyNotPerAddressString) {
  // The HTTP side keys IPv6 callers by their /64: two addresses of one network share the limit.
  auto s = service(600, true, 443, /*refusals_per_minute=*/2);
  const Caller a{"2001:db8::1", 8443, "2001:db8::/64"}, b{"2001:db8::2", 8443, "2001:db8::/64"};
  EXPECT_EQ(refused(run(s.unregister({"made-up"}, a))).kind, RefusalKind::not_found);
  EXPECT_EQ(refused(run(s.unregister({"made-up"}, b))).kind, RefusalKind::not_found);
  EXPECT_EQ(refused(run(s.unregister({"made-up"}, a))).kind, RefusalKind::rate_limited);
}

TEST_F(RegistrationServiceTest, TheQuotaPerDeviceIsAClear403) {
  RegistrationOptions o;
  o.region = "test";
  o.customer_id_prefix = "tst";
  o.listener_host = "listener.test.example";
  o.max_per_device = 1;
  RegistrationService s(std::move(o), registrations, &secret, &cache);
  ok(register_with(s, request()));
  auto second = request();
  second.mailbox = "bob@example.com";
  const auto r = refused(register_with(s, second));
  EXPECT_EQ(r.kind, RefusalKind::forbidden);
  EXPECT_EQ(r.code, "quota_device");
  EXPECT_NE(r.message.find("registration.max_per_device"), std::string::npos);
}

TEST_F(RegistrationServiceTest, NoRegionSecretOrNoDatabaseIs503) {
  auto none = service(600, false);
  const auto r = refused(register_with(none, request()));
  EXPECT_EQ(r.kind, RefusalKind::unavailable);
  EXPECT_EQ(r.code, "not_configured");
  EXPECT_NE(r.message.find("registration.secret_file"), std::string::npos);

  auto options = db.options();
  options.port = mp::test::free_tcp_port();  // nothing listens there
  options.connect_timeout = std::chrono::milliseconds(500);
  store::DatabasePool down(options, store::PoolOptions{1, 10});
  store::MariadbRegistrationStore unreachable(down);
  RegistrationOptions o;
  o.customer_id_prefix = "tst";
  o.listener_host = "listener.test.example";
  RegistrationService s(o, unreachable, &secret, &cache);
  const auto d = refused(register_with(s, request()));
  EXPECT_EQ(d.kind, RefusalKind::unavailable);
  EXPECT_EQ(d.code, "unavailable");
  EXPECT_GT(d.retry_after.count(), 0);
}

}  // namespace
}  // namespace mp::relay
