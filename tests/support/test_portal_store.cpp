// The in-memory customers, credentials and invites of test_portal_store.hpp.
#include "test_portal_store.hpp"

#include <cstdio>
#include <ctime>

namespace mp::test {

namespace {

// "YYYY-MM-DD HH:MM:SS" (UTC, as the store is given it) as a time point; the epoch if malformed.
std::chrono::system_clock::time_point parse_sql_time(const std::string& text) {
  std::tm tm{};
  if (std::sscanf(text.c_str(), "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
    return {};
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// "YYYY-MM-DDTHH:MM:SSZ", as the store reads its DATETIME columns out.
std::string iso_of_sql_time(std::string text) {
  if (text.size() > 10) text[10] = 'T';
  return text + "Z";
}

std::string now_iso() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

void FakePortalStore::add_invite(std::string_view code, bool expired) {
  invites_.push_back({sha384(code), expired, std::nullopt});
}

const FakePortalStore::Customer* FakePortalStore::customer(std::string_view customer_id) const {
  for (const auto& [id, c] : customers_) {
    if (c.row.customer_id == customer_id) return &c;
  }
  return nullptr;
}

std::vector<const FakePortalStore::Credential*> FakePortalStore::credentials_of(
    std::int64_t customer_row_id) const {
  std::vector<const Credential*> out;
  for (const auto& [id, k] : credentials_) {
    if (k.row.customer_row_id == customer_row_id) out.push_back(&k);
  }
  return out;
}

std::optional<Error> FakePortalStore::take_failure() {
  ++calls_;
  if (every_failure_) return make_error(*every_failure_, "fake: the database refused the call");
  if (!failure_ || failure_->call != calls_) return std::nullopt;
  const Errc code = failure_->code;
  failure_.reset();
  return make_error(code, "fake: the database refused the call");
}

FakePortalStore::Invite* FakePortalStore::usable_invite(const Bytes& code_hash) {
  for (auto& invite : invites_) {
    if (invite.code_hash == code_hash && !invite.used_by && !invite.expired) return &invite;
  }
  return nullptr;
}

// MariadbPortalStore's opened_customer.
std::optional<store::CustomerRow> FakePortalStore::opened_customer(
    const store::PortalCaller& caller) const {
  const Customer* found = nullptr;
  for (const auto& [id, c] : customers_) {
    const bool match = caller.admin_key_hash ? c.admin_key_hash == *caller.admin_key_hash
                                             : c.row.customer_id == caller.customer_id;
    if (match) found = &c;
  }
  if (found == nullptr || found->row.customer_id != caller.customer_id ||
      found->row.state == "deleted") {
    return std::nullopt;
  }
  return found->row;
}

// customer_credentials: newest first, seconds_left against the clock.
std::vector<store::CredentialRow> FakePortalStore::credential_rows(
    std::int64_t customer_row_id) const {
  std::vector<store::CredentialRow> out;
  const auto now = std::chrono::system_clock::now();
  for (auto it = credentials_.rbegin(); it != credentials_.rend(); ++it) {
    if (it->second.row.customer_row_id != customer_row_id) continue;
    store::CredentialRow row = it->second.row;
    row.seconds_left =
        std::chrono::duration_cast<std::chrono::seconds>(it->second.not_after - now).count();
    out.push_back(std::move(row));
  }
  return out;
}

std::int64_t FakePortalStore::insert_credential(std::int64_t customer_row_id,
                                                const store::NewCredential& k) {
  Credential c;
  c.row.id = next_id_++;
  c.row.customer_row_id = customer_row_id;
  c.row.customer_id = customers_.at(customer_row_id).row.customer_id;
  c.row.topic = k.topic;
  c.row.development = k.development;
  c.row.production = k.production;
  c.row.state = "active";
  c.row.fingerprint_hex = hex_encode(k.fingerprint_sha256);
  c.row.serial_hex = k.serial_hex;
  c.row.issuer = k.issuer;
  c.row.not_before = iso_of_sql_time(k.not_before);
  c.row.not_after = iso_of_sql_time(k.not_after);
  c.row.activated_at = now_iso();
  c.stored = k;
  c.not_after = parse_sql_time(k.not_after);
  const std::int64_t id = c.row.id;
  credentials_[id] = std::move(c);
  return id;
}

Result<bool> FakePortalStore::change_state(std::int64_t customer_row_id, const std::string& state,
                                           const store::Actor& actor) {
  if (state != "active" && state != "disabled" && state != "deleted")
    return make_error(Errc::invalid_argument, "customer state must be active, disabled or deleted");
  auto it = customers_.find(customer_row_id);
  if (it == customers_.end() || it->second.row.state == "deleted" ||
      it->second.row.state == state) {
    return false;
  }
  it->second.row.state = state;
  write_audit(actor, "customer.state", customer_row_id, "{\"state\":\"" + state + "\"}");
  return true;
}

void FakePortalStore::write_audit(const store::Actor& actor, std::string action,
                                  std::optional<std::int64_t> customer, std::string detail) {
  audit_.push_back(
      {actor.name, actor.source_address, std::move(action), customer, std::move(detail)});
}

boost::asio::awaitable<Result<bool>> FakePortalStore::invite_usable(const Bytes& invite_hash) {
  if (auto e = take_failure()) co_return std::move(*e);
  co_return usable_invite(invite_hash) != nullptr;
}

boost::asio::awaitable<Result<store::CreatedCustomer>> FakePortalStore::create_customer(
    const store::NewCustomer& customer, const store::NewCredential& credential,
    const store::Actor& actor) {
  if (auto e = take_failure()) co_return std::move(*e);
  if (use_invites_before_create_) {
    use_invites_before_create_ = false;
    for (auto& invite : invites_) {
      if (!invite.used_by) invite.used_by = 0;
    }
  }
  Invite* invite = nullptr;
  if (customer.invite_code_hash) {
    invite = usable_invite(*customer.invite_code_hash);
    if (invite == nullptr) {
      co_return make_error(Errc::not_found,
                           "the invite code is not valid: it is unknown, used or expired; ask "
                           "your relay operator for a new one");
    }
  }
  // The unique keys of the customers table (customer_id, admin_key_hash).
  for (const auto& [id, c] : customers_) {
    if (c.row.customer_id == customer.customer_id || c.admin_key_hash == customer.admin_key_hash)
      co_return make_error(Errc::internal, "fake: duplicate key in customers");
  }
  store::CreatedCustomer out;
  out.id = next_id_++;
  Customer c;
  c.row.id = out.id;
  c.row.customer_id = customer.customer_id;
  c.row.display_name = customer.display_name;
  c.row.app_id = customer.app_id;
  c.row.state = "active";
  c.row.created_at = now_iso();
  c.registration_key_hash = customer.registration_key_hash;
  c.admin_key_hash = customer.admin_key_hash;
  customers_[out.id] = std::move(c);
  out.credential_id = insert_credential(out.id, credential);
  if (invite != nullptr) invite->used_by = out.id;
  write_audit(
      actor, "customer.create", out.id,
      "{\"customer\":\"" + customer.customer_id + "\",\"topic\":\"" + credential.topic + "\"}");
  co_return out;
}

boost::asio::awaitable<Result<std::optional<store::CustomerRow>>> FakePortalStore::find_customer(
    const store::PortalCaller& caller) {
  if (auto e = take_failure()) co_return std::move(*e);
  co_return opened_customer(caller);
}

boost::asio::awaitable<Result<std::optional<store::CustomerCredentials>>>
FakePortalStore::find_customer_credentials(const store::PortalCaller& caller) {
  if (auto e = take_failure()) co_return std::move(*e);
  auto found = opened_customer(caller);
  if (!found) co_return std::optional<store::CustomerCredentials>{};
  store::CustomerCredentials out;
  out.credentials = credential_rows(found->id);
  out.customer = std::move(*found);
  co_return std::optional<store::CustomerCredentials>{std::move(out)};
}

boost::asio::awaitable<Result<std::vector<store::CredentialRow>>>
FakePortalStore::customer_credentials(std::int64_t customer_row_id) {
  if (auto e = take_failure()) co_return std::move(*e);
  co_return credential_rows(customer_row_id);
}

boost::asio::awaitable<Result<std::int64_t>> FakePortalStore::replace_credential(
    std::int64_t customer_row_id, const store::NewCredential& credential,
    const store::Actor& actor) {
  if (auto e = take_failure()) co_return std::move(*e);
  auto it = customers_.find(customer_row_id);
  if (it == customers_.end() || it->second.row.state == "deleted")
    co_return make_error(Errc::not_found, "the customer does not exist");
  int retired = 0;
  for (auto& [id, k] : credentials_) {
    if (k.row.customer_row_id == customer_row_id &&
        (k.row.state == "active" || k.row.state == "expired")) {
      k.row.state = "retired";
      ++retired;
    }
  }
  const std::int64_t id = insert_credential(customer_row_id, credential);
  write_audit(
      actor, "credential.renew", customer_row_id,
      "{\"topic\":\"" + credential.topic + "\",\"retired\":" + std::to_string(retired) + "}");
  co_return id;
}

boost::asio::awaitable<Result<bool>> FakePortalStore::set_customer_state(
    std::int64_t customer_row_id, const std::string& state, const store::Actor& actor) {
  if (auto e = take_failure()) co_return std::move(*e);
  co_return change_state(customer_row_id, state, actor);
}

boost::asio::awaitable<Result<std::optional<bool>>> FakePortalStore::delete_customer(
    const store::PortalCaller& caller, const store::Actor& actor) {
  if (auto e = take_failure()) co_return std::move(*e);
  auto found = opened_customer(caller);
  if (!found) co_return std::optional<bool>{};
  auto changed = change_state(found->id, "deleted", actor);
  if (!changed) co_return std::move(changed).error();
  co_return std::optional<bool>{*changed};
}

}  // namespace mp::test
