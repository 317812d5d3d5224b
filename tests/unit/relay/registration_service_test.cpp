// Tests of RegistrationService's own rules against an in-memory RegistrationStore (no database):
// what it refuses before the store (region secret, Customer ID, fields, capability forms, the
// per-address and per-customer limits), what it hands the store (only hashes, the quotas, the
// refresh exemption), how it answers each of the store's answers, and the listener cache it
// updates. The same service on MariaDB: registration_service_mariadb_test.cpp.
#include "relay/registration_service.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "test_registration_service.hpp"
#include "test_registration_store.hpp"

namespace mp::relay {
namespace {

using test::kToken;
using test::make_secret;
using test::run;
const std::string kCustomer = "tst-abcdefghij0123456789";

std::string key_of(const Bytes& hash) {
  return std::string(hash.begin(), hash.end());
}

class RegistrationRules : public ::testing::Test {
 protected:
  void SetUp() override {
    store.add_customer(kCustomer, "rk_right");
    disabled = store.add_customer("tst-disabled00000000000", "rk_disabled", "disabled");
  }

  static RegistrationOptions options() {
    RegistrationOptions o;
    o.region = "test";
    o.customer_id_prefix = "tst";
    o.listener_host = "listener.test.example";
    o.status_frequency_minutes = 20;
    o.other_regions = {{"use1", "register.use1.mailpush.example"}};
    o.max_per_device = 16;
    o.max_per_customer = 1000;
    return o;
  }
  RegistrationService service(RegistrationOptions o = options(), bool with_secret = true) {
    return RegistrationService(std::move(o), store, with_secret ? &secret : nullptr, &cache);
  }

  static RegisterRequest request(const std::string& key = "rk_right") {
    return test::register_request(kCustomer, key, "Alice@Example.com");
  }
  Outcome<Registered> register_with(RegistrationService& s, const RegisterRequest& r,
                                    const Caller& caller = {"192.0.2.1", 8443, ""}) {
    return run(s.register_device(r, caller));
  }

  static Registered ok(const Outcome<Registered>& o) {
    if (const auto* refused = std::get_if<RegistrationRefusal>(&o)) {
      ADD_FAILURE() << refused->code << ": " << refused->message;
      return {};
    }
    return std::get<Registered>(o);
  }
  static RegistrationRefusal refused(const auto& o) {
    if (const auto* r = std::get_if<RegistrationRefusal>(&o)) return *r;
    ADD_FAILURE() << "accepted";
    return {};
  }

  mp::test::FakeRegistrationStore store;
  keys::RegionSecret secret = make_secret();
  RegistrationCache cache{1000};
  std::int64_t disabled = 0;
};

TEST_F(RegistrationRules, TheCapabilityIsIssuedHereAndOnlyItsHashReachesTheStore) {
  auto s = service();
  auto r = request();
  r.folder_id = "AAMkAGI2-inbox";
  const Registered first = ok(register_with(s, r));
  EXPECT_EQ(first.change, store::CapabilityChange::created);
  EXPECT_EQ(first.customer_id, kCustomer);
  EXPECT_EQ(first.capability.size(), keys::kCapabilityChars);
  EXPECT_TRUE(secret.issued(first.capability));
  EXPECT_EQ(first.listener_url, "https://listener.test.example/ews/v1/notify/" + first.capability);
  EXPECT_EQ(first.status_frequency_minutes, 20u);
  EXPECT_EQ(first.device, "a1b2c3d4…(64)");

  ASSERT_TRUE(store.last_registration().has_value());
  const store::CapabilityRegistration& written = *store.last_registration();
  EXPECT_EQ(written.new_hash, sha384(first.capability));
  EXPECT_FALSE(written.presented_hash.has_value());
  EXPECT_EQ(written.mailbox_hmac, secret.mailbox_hmac("alice@example.com").value())
      << "the HMAC of the normalised address, never the address";
  EXPECT_EQ(written.token_hex, kToken);
  EXPECT_EQ(written.status_frequency_minutes, 20);
  EXPECT_EQ(written.folder_id, std::optional<std::string>("AAMkAGI2-inbox"));
  EXPECT_EQ(written.max_per_device, 16u);
  EXPECT_EQ(written.max_per_customer, 1000u);
  EXPECT_FALSE(written.refresh_only);
  ASSERT_EQ(store.actors().size(), 1u);
  EXPECT_EQ(store.actors()[0].name, "registration-api");
  EXPECT_EQ(store.actors()[0].source_address, "192.0.2.1");
  ASSERT_NE(store.find(first.registration_id), nullptr);
  EXPECT_EQ(store.find(first.registration_id)->secret_hash, sha384(first.capability));
}

TEST_F(RegistrationRules, ABase64TokenIsStoredAsHex) {
  auto s = service();
  auto r = request();
  r.device_token = "obLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTpLXG1+j5A=";
  const Registered done = ok(register_with(s, r));
  EXPECT_TRUE(done.token_was_base64);
  EXPECT_EQ(store.last_registration()->token_hex, kToken);
}

TEST_F(RegistrationRules, ARefreshKeepsTheUrlAndAnythingElseReplacesItAndRetiresTheOld) {
  auto s = service();
  const Registered first = ok(register_with(s, request()));
  const std::string old_key = key_of(sha384(first.capability));
  cache.put(old_key,
            CachedRegistration{first.registration_id, 1, std::make_shared<CustomerView>(), {}});

  auto refresh = request();
  refresh.capability = first.capability;
  const Registered again = ok(register_with(s, refresh));
  EXPECT_EQ(again.change, store::CapabilityChange::unchanged);
  EXPECT_EQ(again.capability, first.capability);
  EXPECT_EQ(again.listener_url, first.listener_url);
  EXPECT_EQ(store.last_registration()->presented_hash,
            std::optional<Bytes>(sha384(first.capability)));
  EXPECT_EQ(cache.get(old_key).hit, RegistrationCache::Hit::found);

  // A URL from before capabilities or a made-up value is no handle: presented as none.
  for (const std::string& no_handle :
       {secret.callback_secret(first.registration_id, 0), std::string("not-a-capability")}) {
    auto other = request();
    other.capability = no_handle;
    (void)ok(register_with(s, other));
    EXPECT_FALSE(store.last_registration()->presented_hash.has_value()) << no_handle;
  }
  auto repeat = request();
  const Registered replaced = ok(register_with(s, repeat));
  EXPECT_EQ(replaced.change, store::CapabilityChange::replaced);
  EXPECT_NE(replaced.capability, first.capability);
  EXPECT_EQ(cache.get(old_key).hit, RegistrationCache::Hit::absent)
      << "the old URL is answered Unsubscribe here at once";
  EXPECT_EQ(store.active_registrations(), 1u);
}

TEST_F(RegistrationRules, ListenerUrlsCarryThePortUnless443) {
  auto o = options();
  o.listener_port = 0;
  auto by_request = service(o);
  EXPECT_EQ(ok(register_with(by_request, request(), {"192.0.2.1", 40123, ""}))
                .listener_url.rfind("https://listener.test.example:40123/ews/v1/notify/", 0),
            0u);
  o.listener_port = 443;
  auto standard = service(o);
  EXPECT_EQ(ok(register_with(standard, request(), {"192.0.2.1", 40123, ""}))
                .listener_url.rfind("https://listener.test.example/ews/v1/notify/", 0),
            0u);
}

TEST_F(RegistrationRules, MalformedRequestsAreRefusedBeforeTheStore) {
  auto s = service();
  struct Case {
    std::function<void(RegisterRequest&)> change;
    RefusalKind kind;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](RegisterRequest& r) { r.customer_id = ""; }, RefusalKind::invalid, "customer_id"},
      {[](RegisterRequest& r) { r.customer_id = "TST_bad"; }, RefusalKind::invalid, "customer_id"},
      {[](RegisterRequest& r) { r.registration_key = ""; }, RefusalKind::invalid,
       "registration_key"},
      {[](RegisterRequest& r) { r.registration_key = std::string(300, 'k'); },
       RefusalKind::unauthorized, ""},
      {[](RegisterRequest& r) { r.mailbox = "no-at-sign"; }, RefusalKind::invalid, "mailbox"},
      {[](RegisterRequest& r) { r.device_token = "abcd"; }, RefusalKind::invalid, "device_token"},
      {[](RegisterRequest& r) { r.environment = "staging"; }, RefusalKind::invalid, "environment"},
      {[](RegisterRequest& r) { r.folder_id = ""; }, RefusalKind::invalid, "folder_id"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto r = request();
    cases[i].change(r);
    const auto answer = refused(register_with(s, r));
    EXPECT_EQ(answer.kind, cases[i].kind) << "case " << i << ": " << answer.code;
    EXPECT_EQ(answer.field, cases[i].field) << "case " << i;
  }
  EXPECT_EQ(store.calls(), 0u);
}

TEST_F(RegistrationRules, NoRegionSecretAndOtherRegionsAreRefusedBeforeTheStore) {
  auto none = service(options(), /*with_secret=*/false);
  const auto r = refused(register_with(none, request()));
  EXPECT_EQ(r.kind, RefusalKind::unavailable);
  EXPECT_EQ(r.code, "not_configured");
  EXPECT_GT(r.retry_after.count(), 0);
  EXPECT_EQ(
      refused(run(none.unregister({secret.issue_capability()}, {"192.0.2.1", 8443, ""}))).code,
      "not_configured");

  auto s = service();
  auto elsewhere = request();
  elsewhere.customer_id = "use1-abcdefghij0123456789";
  const auto w = refused(register_with(s, elsewhere));
  EXPECT_EQ(w.kind, RefusalKind::wrong_region);
  EXPECT_EQ(w.region_host, "register.use1.mailpush.example");
  EXPECT_EQ(store.calls(), 0u);
}

TEST_F(RegistrationRules, WrongKeysAreOneAnswerAndTheAddressIsLimitedAfterAFew) {
  auto o = options();
  o.refusals_per_address_per_minute = 2;
  auto s = service(o);
  const Caller guesser{"198.51.100.7", 8443, ""};
  auto unknown = request();
  unknown.customer_id = "tst-zzzzzzzzzz0000000000";
  const auto wrong = refused(register_with(s, request("rk_wrong"), guesser));
  const auto none = refused(register_with(s, unknown, guesser));
  EXPECT_EQ(wrong.kind, RefusalKind::unauthorized);
  EXPECT_EQ(none.kind, RefusalKind::unauthorized);
  EXPECT_EQ(wrong.message, none.message);
  EXPECT_EQ(store.calls(), 2u);

  const auto limited = refused(register_with(s, request(), guesser));
  EXPECT_EQ(limited.kind, RefusalKind::rate_limited) << "even with the right key";
  EXPECT_GT(limited.retry_after.count(), 0);
  EXPECT_EQ(store.calls(), 2u) << "refused before the store";
  // Capabilities from that address wait too; another address does not.
  EXPECT_EQ(refused(run(s.move({secret.issue_capability(), kToken, "production"}, guesser))).kind,
            RefusalKind::rate_limited);
  (void)ok(register_with(s, request(), {"198.51.100.8", 8443, ""}));
}

TEST_F(RegistrationRules, ADisabledCustomerIsForbiddenAndNothingIsWritten) {
  auto s = service();
  auto r = request("rk_disabled");
  r.customer_id = "tst-disabled00000000000";
  const auto answer = refused(register_with(s, r));
  EXPECT_EQ(answer.kind, RefusalKind::forbidden);
  EXPECT_EQ(answer.code, "customer_disabled");
  EXPECT_FALSE(store.last_registration().has_value());
  store.set_customer_state(disabled, "deleted");
  EXPECT_EQ(refused(register_with(s, r)).code, "customer_deleted");
}

TEST_F(RegistrationRules, OnlyAuthenticatedCallsSpendTheCustomersLimit) {
  auto o = options();
  o.per_customer_per_minute = 2;
  auto s = service(o);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(refused(register_with(s, request("rk_guess"), {"198.51.100.9", 8443, ""})).kind,
              RefusalKind::unauthorized);
  }
  const Registered alice = ok(register_with(s, request()));
  auto bob = request();
  bob.mailbox = "bob@example.com";
  (void)ok(register_with(s, bob));
  const std::size_t written = store.active_registrations();

  auto carol = request();
  carol.mailbox = "carol@example.com";
  const auto limited = refused(register_with(s, carol));
  EXPECT_EQ(limited.kind, RefusalKind::rate_limited);
  EXPECT_EQ(limited.code, "rate_limited");
  EXPECT_GE(limited.retry_after.count(), 1);
  EXPECT_LE(limited.retry_after.count(), 30);
  EXPECT_EQ(store.active_registrations(), written);
  // From now on refused before the store, whatever the key.
  const std::size_t calls = store.calls();
  EXPECT_EQ(refused(register_with(s, request("rk_guess"))).kind, RefusalKind::rate_limited);
  EXPECT_EQ(store.calls(), calls);

  // A refresh is never refused for the limit: the store gets it as refresh_only.
  auto refresh = request();
  refresh.capability = alice.capability;
  EXPECT_EQ(ok(register_with(s, refresh)).change, store::CapabilityChange::unchanged);
  EXPECT_TRUE(store.last_registration()->refresh_only);
  // Another mailbox presenting alice's capability is no refresh: limited.
  carol.capability = alice.capability;
  const auto borrowed = refused(register_with(s, carol));
  EXPECT_EQ(borrowed.kind, RefusalKind::rate_limited);
  EXPECT_GT(borrowed.retry_after.count(), 0);
  EXPECT_NE(borrowed.message.find("not this registration's"), std::string::npos);
}

TEST_F(RegistrationRules, TheStoresRefusalsBecomeAnswersThatSayWhatToDo) {
  auto o = options();
  o.max_per_device = 1;
  auto s = service(o);
  (void)ok(register_with(s, request()));
  auto second = request();
  second.mailbox = "bob@example.com";
  const auto device_full = refused(register_with(s, second));
  EXPECT_EQ(device_full.kind, RefusalKind::forbidden);
  EXPECT_EQ(device_full.code, "quota_device");
  EXPECT_NE(device_full.message.find("registration.max_per_device"), std::string::npos);

  o = options();
  o.max_per_customer = 1;
  auto t = service(o);
  auto other_device = second;
  other_device.device_token = std::string(64, 'b');
  const auto customer_full = refused(register_with(t, other_device));
  EXPECT_EQ(customer_full.code, "quota_customer");
  EXPECT_NE(customer_full.message.find("registration.max_per_customer"), std::string::npos);

  const std::string dev_token(64, 'd');
  store.refuse_device(dev_token, "production", /*invalid=*/true, "BadDeviceToken");
  auto bad = request();
  bad.device_token = dev_token;
  const auto invalid = refused(register_with(s, bad));
  EXPECT_EQ(invalid.kind, RefusalKind::device_refused);
  EXPECT_EQ(invalid.code, "device_invalid");
  EXPECT_NE(invalid.message.find("production"), std::string::npos);
  EXPECT_NE(invalid.message.find("BadDeviceToken"), std::string::npos);

  const std::string gone_token(64, 'e');
  store.refuse_device(gone_token, "production", /*invalid=*/false, "2024-05-01T10:00:00Z");
  bad.device_token = gone_token;
  const auto unregistered = refused(register_with(s, bad));
  EXPECT_EQ(unregistered.code, "device_unregistered");
  EXPECT_NE(unregistered.message.find("2024-05-01T10:00:00Z"), std::string::npos);
}

TEST_F(RegistrationRules, AnUnreachableStoreIs503AndAnyOtherFailure500) {
  auto s = service();
  store.fail_next_call(Errc::unavailable);
  const auto down = refused(register_with(s, request()));
  EXPECT_EQ(down.kind, RefusalKind::unavailable);
  EXPECT_EQ(down.code, "unavailable");
  EXPECT_EQ(down.retry_after.count(), 30);
  store.fail_next_call(Errc::busy);
  EXPECT_EQ(refused(register_with(s, request())).kind, RefusalKind::unavailable);
  store.fail_next_call(Errc::internal);
  const auto broken = refused(register_with(s, request()));
  EXPECT_EQ(broken.kind, RefusalKind::internal);
  EXPECT_EQ(broken.code, "internal");

  const Registered r = ok(register_with(s, request()));
  store.fail_next_call(Errc::unavailable);
  EXPECT_EQ(refused(run(s.unregister({r.capability}, {"192.0.2.1", 8443, ""}))).kind,
            RefusalKind::unavailable);
  store.fail_next_call(Errc::unavailable);
  EXPECT_EQ(refused(run(s.move({r.capability, std::string(64, 'c'), "production"},
                               {"192.0.2.1", 8443, ""})))
                .kind,
            RefusalKind::unavailable);
}

TEST_F(RegistrationRules, OnlyAnIssuedCapabilityReachesTheStoreForAMoveOrAnEnd) {
  auto o = options();
  o.refusals_per_address_per_minute = 100;
  auto s = service(o);
  const Registered r = ok(register_with(s, request()));
  const Caller caller{"192.0.2.1", 8443, ""};
  const std::size_t calls = store.calls();
  for (const std::string& no_handle :
       {std::string(), std::string("made-up"), secret.callback_secret(r.registration_id, 0)}) {
    EXPECT_EQ(refused(run(s.move({no_handle, std::string(64, 'c'), "production"}, caller))).kind,
              RefusalKind::not_found);
    EXPECT_EQ(refused(run(s.unregister({no_handle}, caller))).kind, RefusalKind::not_found);
  }
  EXPECT_EQ(store.calls(), calls) << "decided without the store";
  // Issued but no registration's: the store says so, and the answer is the same.
  const auto unknown = refused(run(s.unregister({secret.issue_capability()}, caller)));
  EXPECT_EQ(unknown.kind, RefusalKind::not_found);
  EXPECT_EQ(store.calls(), calls + 1);
}

TEST_F(RegistrationRules, AMoveAndAnEndUpdateTheListenersCache) {
  auto s = service();
  const Caller caller{"192.0.2.1", 8443, ""};
  const Registered mine = ok(register_with(s, request()));
  // The new token already had a registration for the mailbox: it gives way to the moved one.
  const std::string new_token(64, 'c');
  auto theirs = request();
  theirs.device_token = new_token;
  const Registered displaced = ok(register_with(s, theirs));
  const std::string displaced_key = key_of(sha384(displaced.capability));
  cache.put(displaced_key,
            CachedRegistration{displaced.registration_id, 1, std::make_shared<CustomerView>(), {}});

  auto moved = run(s.move({mine.capability, new_token, "production"}, caller));
  ASSERT_TRUE(std::holds_alternative<Moved>(moved)) << refused(moved).message;
  EXPECT_TRUE(std::get<Moved>(moved).moved);
  EXPECT_EQ(std::get<Moved>(moved).customer_id, kCustomer);
  EXPECT_EQ(std::get<Moved>(moved).device, "cccccccc…(64)");
  EXPECT_EQ(cache.get(displaced_key).hit, RegistrationCache::Hit::absent);
  auto again = run(s.move({mine.capability, new_token, "production"}, caller));
  ASSERT_TRUE(std::holds_alternative<Moved>(again));
  EXPECT_FALSE(std::get<Moved>(again).moved);

  store.refuse_device(std::string(64, 'f'), "development", true, "BadDeviceToken");
  EXPECT_EQ(
      refused(run(s.move({mine.capability, std::string(64, 'f'), "development"}, caller))).code,
      "device_invalid");

  const std::string mine_key = key_of(sha384(mine.capability));
  cache.put(mine_key,
            CachedRegistration{mine.registration_id, 1, std::make_shared<CustomerView>(), {}});
  auto ended = run(s.unregister({mine.capability}, caller));
  ASSERT_TRUE(std::holds_alternative<Unregistered>(ended));
  EXPECT_EQ(std::get<Unregistered>(ended).customer_id, kCustomer);
  EXPECT_EQ(cache.get(mine_key).hit, RegistrationCache::Hit::absent);
  EXPECT_EQ(refused(run(s.unregister({mine.capability}, caller))).kind, RefusalKind::not_found);
}

}  // namespace
}  // namespace mp::relay
