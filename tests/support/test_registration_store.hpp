// An in-memory store::RegistrationStore with the MariaDB store's rules (store/registrations.cpp):
// customers by Customer ID and key hash; one registration per customer, mailbox and device,
// refreshed by its capability's hash, replaced without it, refused for a refused device, a full
// quota or a refresh_only call that is none; moves and ends by capability. One thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "store/registration_store.hpp"

namespace mp::test {

class FakeRegistrationStore final : public store::RegistrationStore {
 public:
  struct Registration {
    std::int64_t id = 0;
    std::int64_t customer_id = 0;  // customers' row id
    Bytes mailbox_hmac;
    std::string token_hex;
    std::string environment;
    Bytes secret_hash;
    bool active = true;
    int status_frequency_minutes = 0;
    std::optional<std::string> folder_id;
  };

  // Returns the customer's row id.
  std::int64_t add_customer(std::string customer_id, std::string_view registration_key,
                            std::string state = "active");
  void set_customer_state(std::int64_t id, std::string state);
  // APNs refused the token in this environment (CapabilityChange::device_invalid or
  // device_unregistered), with the note the store gives.
  void refuse_device(std::string token_hex, std::string environment, bool invalid,
                     std::string note);
  // The next call fails with `code` (the database went away: Errc::unavailable).
  void fail_next_call(Errc code) { failure_ = code; }

  // What the store holds and was asked.
  const Registration* find(std::int64_t registration_id) const;
  const Registration* find_by_hash(const Bytes& secret_hash) const;
  std::size_t active_registrations() const;
  std::size_t calls() const { return calls_; }
  std::size_t admissions() const { return admissions_; }  // times `admit` was asked
  const std::optional<store::CapabilityRegistration>& last_registration() const {
    return last_registration_;
  }
  const std::vector<store::Actor>& actors() const { return actors_; }

  boost::asio::awaitable<Result<store::KeyedRegistrationResult>> admit_and_register(
      const std::string& customer_id, const Bytes& registration_key_hash, const Admit& admit,
      const store::CapabilityRegistration& registration, const store::Actor& actor) override;
  boost::asio::awaitable<Result<store::MoveResult>> move_with_capability(
      const store::CapabilityMove& move, const store::Actor& actor) override;
  boost::asio::awaitable<Result<std::optional<store::Ended>>> unregister_with_capability(
      const Bytes& presented_hash, const store::Actor& actor) override;

 private:
  struct Customer {
    store::RegistrationCustomer row;
    Bytes key_hash;
  };
  struct DeviceRefusal {
    bool invalid = true;
    std::string note;
  };
  std::optional<Error> take_failure();
  const DeviceRefusal* refusal_of(const std::string& token_hex,
                                  const std::string& environment) const;
  store::CapabilityResult write(const store::CapabilityRegistration& r);

  std::map<std::int64_t, Customer> customers_;
  std::map<std::int64_t, Registration> registrations_;
  std::map<std::pair<std::string, std::string>, DeviceRefusal> refused_devices_;
  std::int64_t next_id_ = 1;
  std::optional<Errc> failure_;
  std::size_t calls_ = 0;
  std::size_t admissions_ = 0;
  std::optional<store::CapabilityRegistration> last_registration_;
  std::vector<store::Actor> actors_;
};

}  // namespace mp::test
