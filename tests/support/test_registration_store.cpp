// The in-memory registrations of test_registration_store.hpp.
#include "test_registration_store.hpp"

#include <algorithm>

namespace mp::test {
namespace asio = boost::asio;

std::int64_t FakeRegistrationStore::add_customer(std::string customer_id,
                                                 std::string_view registration_key,
                                                 std::string state) {
  const std::int64_t id = next_id_++;
  customers_[id] =
      Customer{{id, std::move(customer_id), std::move(state)}, sha384(registration_key)};
  return id;
}

void FakeRegistrationStore::set_customer_state(std::int64_t id, std::string state) {
  customers_.at(id).row.state = std::move(state);
}

void FakeRegistrationStore::refuse_device(std::string token_hex, std::string environment,
                                          bool invalid, std::string note) {
  refused_devices_[{std::move(token_hex), std::move(environment)}] = {invalid, std::move(note)};
}

const FakeRegistrationStore::Registration* FakeRegistrationStore::find(std::int64_t id) const {
  auto it = registrations_.find(id);
  return it == registrations_.end() ? nullptr : &it->second;
}

const FakeRegistrationStore::Registration* FakeRegistrationStore::find_by_hash(
    const Bytes& secret_hash) const {
  for (const auto& [id, r] : registrations_) {
    if (r.active && r.secret_hash == secret_hash) return &r;
  }
  return nullptr;
}

std::size_t FakeRegistrationStore::active_registrations() const {
  return static_cast<std::size_t>(std::count_if(registrations_.begin(), registrations_.end(),
                                                [](const auto& r) { return r.second.active; }));
}

std::optional<Error> FakeRegistrationStore::take_failure() {
  ++calls_;
  if (!failure_) return std::nullopt;
  const Errc code = *failure_;
  failure_.reset();
  return make_error(code, "fake: the database refused the call");
}

const FakeRegistrationStore::DeviceRefusal* FakeRegistrationStore::refusal_of(
    const std::string& token_hex, const std::string& environment) const {
  auto it = refused_devices_.find({token_hex, environment});
  return it == refused_devices_.end() ? nullptr : &it->second;
}

// register_in_transaction: device refusals, refresh, refresh_only, replace, quotas, create.
store::CapabilityResult FakeRegistrationStore::write(const store::CapabilityRegistration& r) {
  using store::CapabilityChange;
  store::CapabilityResult out;
  if (const auto* refused = refusal_of(r.token_hex, r.environment)) {
    out.change =
        refused->invalid ? CapabilityChange::device_invalid : CapabilityChange::device_unregistered;
    out.device_note = refused->note;
    return out;
  }
  Registration* pair = nullptr;
  for (auto& [id, reg] : registrations_) {
    if (reg.customer_id == r.customer_id && reg.mailbox_hmac == r.mailbox_hmac &&
        reg.token_hex == r.token_hex && reg.environment == r.environment) {
      pair = &reg;
    }
  }
  if (pair) out.registration_id = pair->id;
  if (pair && pair->active && r.presented_hash && *r.presented_hash == pair->secret_hash) {
    pair->status_frequency_minutes = r.status_frequency_minutes;
    pair->folder_id = r.folder_id;
    out.change = CapabilityChange::unchanged;
    return out;
  }
  if (r.refresh_only) {
    out.change = CapabilityChange::limited;
    return out;
  }
  if (pair && pair->active) {
    out.retired_secret_hashes.push_back(pair->secret_hash);
    pair->secret_hash = r.new_hash;
    pair->status_frequency_minutes = r.status_frequency_minutes;
    pair->folder_id = r.folder_id;
    out.change = CapabilityChange::replaced;
    return out;
  }
  std::size_t on_device = 0, of_customer = 0;
  for (const auto& [id, reg] : registrations_) {
    if (!reg.active || reg.customer_id != r.customer_id) continue;
    ++of_customer;
    if (reg.token_hex == r.token_hex && reg.environment == r.environment) ++on_device;
  }
  if (r.max_per_device > 0 && on_device >= r.max_per_device) {
    out.change = CapabilityChange::quota_device;
    return out;
  }
  if (r.max_per_customer > 0 && of_customer >= r.max_per_customer) {
    out.change = CapabilityChange::quota_customer;
    return out;
  }
  if (!pair) {
    Registration fresh;
    fresh.id = next_id_++;
    fresh.customer_id = r.customer_id;
    fresh.mailbox_hmac = r.mailbox_hmac;
    fresh.token_hex = r.token_hex;
    fresh.environment = r.environment;
    pair = &(registrations_[fresh.id] = fresh);
  }
  pair->active = true;
  pair->secret_hash = r.new_hash;
  pair->status_frequency_minutes = r.status_frequency_minutes;
  pair->folder_id = r.folder_id;
  out.registration_id = pair->id;
  out.change = CapabilityChange::created;
  return out;
}

asio::awaitable<Result<store::KeyedRegistrationResult>> FakeRegistrationStore::admit_and_register(
    const std::string& customer_id, const Bytes& registration_key_hash, const Admit& admit,
    const store::CapabilityRegistration& registration, const store::Actor& actor) {
  if (auto failed = take_failure()) co_return *failed;
  store::KeyedRegistrationResult out;
  for (const auto& [id, c] : customers_) {
    if (c.row.customer_id == customer_id && c.key_hash == registration_key_hash) {
      out.customer = c.row;
    }
  }
  if (!out.customer) co_return out;
  ++admissions_;
  out.admission = admit(*out.customer);
  if (out.admission.outcome == store::AdmissionOutcome::refused) co_return out;
  store::CapabilityRegistration r = registration;
  r.customer_id = out.customer->id;
  r.refresh_only = out.admission.outcome == store::AdmissionOutcome::refresh_only;
  last_registration_ = r;
  actors_.push_back(actor);
  out.written = write(r);
  co_return out;
}

asio::awaitable<Result<store::MoveResult>> FakeRegistrationStore::move_with_capability(
    const store::CapabilityMove& m, const store::Actor& actor) {
  if (auto failed = take_failure()) co_return *failed;
  store::MoveResult out;
  auto it = std::find_if(registrations_.begin(), registrations_.end(), [&](const auto& r) {
    return r.second.active && r.second.secret_hash == m.presented_hash;
  });
  if (it == registrations_.end()) co_return out;  // not_found
  Registration& moving = it->second;
  out.customer_id = moving.customer_id;
  out.customer_public_id = customers_.at(moving.customer_id).row.customer_id;
  if (const auto* refused = refusal_of(m.token_hex, m.environment)) {
    out.change = refused->invalid ? store::MoveChange::device_invalid
                                  : store::MoveChange::device_unregistered;
    out.device_note = refused->note;
    co_return out;
  }
  if (moving.token_hex == m.token_hex && moving.environment == m.environment) {
    out.change = store::MoveChange::unchanged;
    co_return out;
  }
  // What the new token had for this mailbox gives way.
  for (auto other = registrations_.begin(); other != registrations_.end();) {
    const Registration& o = other->second;
    if (o.id != moving.id && o.customer_id == moving.customer_id &&
        o.mailbox_hmac == moving.mailbox_hmac && o.token_hex == m.token_hex &&
        o.environment == m.environment) {
      if (o.active) out.retired_secret_hashes.push_back(o.secret_hash);
      other = registrations_.erase(other);
    } else {
      ++other;
    }
  }
  moving.token_hex = m.token_hex;
  moving.environment = m.environment;
  actors_.push_back(actor);
  out.change = store::MoveChange::moved;
  co_return out;
}

asio::awaitable<Result<std::optional<store::Ended>>>
FakeRegistrationStore::unregister_with_capability(const Bytes& presented,
                                                  const store::Actor& actor) {
  if (auto failed = take_failure()) co_return *failed;
  for (auto& [id, r] : registrations_) {
    if (!r.active || r.secret_hash != presented) continue;
    r.active = false;
    actors_.push_back(actor);
    co_return std::optional<store::Ended>{
        store::Ended{r.customer_id, customers_.at(r.customer_id).row.customer_id, presented}};
  }
  co_return std::optional<store::Ended>{};
}

}  // namespace mp::test
