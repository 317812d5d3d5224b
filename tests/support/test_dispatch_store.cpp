// The in-memory pending badges and dead letters of test_dispatch_store.hpp.
#include "test_dispatch_store.hpp"

#include <algorithm>
#include <cstdio>

namespace mp::test {
namespace asio = boost::asio;

std::int64_t FakeDispatchStore::add_customer(std::string public_id, std::string state) {
  const std::int64_t id = next_id_++;
  customers_[id] = Customer{std::move(public_id), std::move(state), std::nullopt};
  return id;
}

std::int64_t FakeDispatchStore::add_device(std::int64_t customer_id, std::string environment,
                                           std::string token_hex) {
  const std::int64_t id = next_id_++;
  if (token_hex.empty()) {
    char prefix[17];
    std::snprintf(prefix, sizeof prefix, "%016llx", static_cast<unsigned long long>(id));
    token_hex = std::string(prefix) + std::string(48, 'a');
  }
  Device d;
  d.customer_id = customer_id;
  d.token_hex = std::move(token_hex);
  d.environment = std::move(environment);
  devices_[id] = std::move(d);
  return id;
}

std::int64_t FakeDispatchStore::queue(const std::string& owner, std::int64_t device_id,
                                      std::int64_t badge, std::chrono::seconds waited) {
  Row r;
  r.id = next_id_++;
  r.owner = owner;
  r.device_id = device_id;
  r.customer_id = devices_.at(device_id).customer_id;
  r.badge = badge;
  r.created = Clock::now() - waited;
  r.next_attempt = Clock::now();
  rows_[r.id] = r;
  return r.id;
}

void FakeDispatchStore::bump(std::int64_t id, std::int64_t badge) {
  Row& r = rows_.at(id);
  ++r.version;
  r.badge = badge;
}

const FakeDispatchStore::Row* FakeDispatchStore::row(std::int64_t id) const {
  auto it = rows_.find(id);
  return it == rows_.end() ? nullptr : &it->second;
}

std::size_t FakeDispatchStore::queued() const {
  return static_cast<std::size_t>(std::count_if(
      rows_.begin(), rows_.end(), [](const auto& r) { return r.second.state == "queued"; }));
}

void FakeDispatchStore::wake(std::int64_t id, std::string reason, bool allowed) {
  Row& r = rows_.at(id);
  r.wake_reason = std::move(reason);
  r.wake_allowed = allowed;
}

asio::awaitable<Result<std::vector<store::OutboxRow>>> FakeDispatchStore::read_due_outbox(
    const std::string& owner, std::size_t limit, const std::vector<std::int64_t>& paused) {
  ++reads_;
  last_paused_ = paused;
  const auto now = Clock::now();
  std::vector<const Row*> due;
  for (const auto& [id, r] : rows_) {
    if (r.owner != owner || r.state != "queued" || r.next_attempt > now) continue;
    if (std::find(paused.begin(), paused.end(), r.customer_id) != paused.end()) continue;
    due.push_back(&r);
  }
  // ORDER BY badge_due_at LIMIT ? (ties by id, to be deterministic)
  std::sort(due.begin(), due.end(), [](const Row* a, const Row* b) {
    return a->next_attempt != b->next_attempt ? a->next_attempt < b->next_attempt : a->id < b->id;
  });
  if (due.size() > limit) due.resize(limit);
  std::vector<store::OutboxRow> out;
  for (const Row* r : due) {
    const Device& d = devices_.at(r->device_id);
    const Customer& c = customers_.at(r->customer_id);
    store::OutboxRow o;
    o.id = r->id;
    o.version = r->version;
    o.customer_id = r->customer_id;
    o.device_id = r->device_id;
    o.mailbox_id = 1;
    o.badge = r->badge;
    o.attempts = r->attempts;
    o.age_us = std::chrono::duration_cast<std::chrono::microseconds>(now - r->created).count();
    o.token_hex = d.token_hex;
    o.environment = d.environment;
    o.device_state = d.state;
    o.customer_public_id = c.public_id;
    o.customer_state = c.state;
    o.wake_reason = r->wake_reason;
    o.wake_allowed = r->wake_allowed;
    out.push_back(std::move(o));
  }
  co_return out;
}

asio::awaitable<Status> FakeDispatchStore::apply_dispatch_writes(
    const store::DispatchWrites& writes) {
  ++write_attempts_;
  if (failing_writes_ > 0) {
    --failing_writes_;
    co_return make_error(Errc::unavailable, "fake: the database is away");
  }
  // One transaction in outbox.cpp's order: dead letters, cleared marks, retries, devices. A mark
  // whose version moved since the read stays queued, as a new badge.
  const auto now = Clock::now();
  const auto clear = [&](const store::PendingMark& m) {
    auto it = rows_.find(m.id);
    if (it == rows_.end() || it->second.state != "queued") return false;
    if (it->second.version == m.version) return true;
    it->second.attempts = 0;
    it->second.last_error.clear();
    it->second.created = now;
    return false;
  };
  wakes_written_.insert(wakes_written_.end(), writes.wakes.begin(), writes.wakes.end());
  for (const auto& d : writes.dead) {
    if (!clear(d.mark)) continue;
    Row& r = rows_.at(d.mark.id);
    r.state = "dead";
    ++r.attempts;
    r.last_error = d.reason;
  }
  for (const auto& m : writes.remove) {
    if (clear(m)) rows_.erase(m.id);
  }
  for (const auto& r : writes.retry) {
    auto it = rows_.find(r.id);
    if (it == rows_.end() || it->second.state != "queued") continue;
    ++it->second.attempts;
    it->second.next_attempt = now + r.delay;
    it->second.last_error = r.error;
  }
  for (const auto& change : writes.devices) {
    auto it = devices_.find(change.device_id);
    if (it == devices_.end() || it->second.state != "active") continue;
    it->second.state = change.unregistered ? "unregistered" : "invalid";
    if (change.unregistered) {
      it->second.unregistered_at =
          change.unregistered_at.value_or(std::chrono::system_clock::now());
    }
    it->second.invalid_reason = change.reason;
  }
  ++writes_applied_;
  co_return Status{};
}

asio::awaitable<Result<std::uint64_t>> FakeDispatchStore::take_over_outbox(const std::string& owner,
                                                                           std::chrono::seconds,
                                                                           std::size_t limit) {
  std::uint64_t moved = 0;
  for (auto& [id, r] : rows_) {
    if (moved >= limit) break;
    if (r.state == "queued" && r.owner != owner && gone_.count(r.owner)) {
      r.owner = owner;
      ++moved;
    }
  }
  co_return moved;
}

asio::awaitable<Result<std::uint64_t>> FakeDispatchStore::purge_dead_letters(std::chrono::hours,
                                                                             std::size_t) {
  co_return std::uint64_t{0};  // dead letters of a test are never old enough
}

asio::awaitable<Result<store::OutboxStats>> FakeDispatchStore::outbox_stats() {
  store::OutboxStats s;
  const auto now = Clock::now();
  for (const auto& [id, r] : rows_) {
    if (r.state == "dead") {
      ++s.dead;
      continue;
    }
    ++s.queued;
    s.oldest_queued_seconds = std::max<std::int64_t>(
        s.oldest_queued_seconds,
        std::chrono::duration_cast<std::chrono::seconds>(now - r.created).count());
  }
  co_return s;
}

asio::awaitable<Status> FakeDispatchStore::set_customer_paused(
    std::int64_t customer_id, const std::optional<std::string>& reason) {
  pause_calls_.emplace_back(customer_id, reason);
  auto it = customers_.find(customer_id);
  if (it != customers_.end()) it->second.paused_reason = reason;
  co_return Status{};
}

}  // namespace mp::test
