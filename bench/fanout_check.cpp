// fanout_check: matches what apns-sim accepted with the callbacks fanout_load sent, for
// bench/fanout_bench.sh.
//
//   fanout_check --events ev.tsv --control-port 40123 [--since 0]
//
// Reads the per-event file of fanout_load (one line per event: mailbox, device slot, badge, due
// and send times in µs of the system clock, answer) and every notification apns-sim accepted
// since --since (GET /accepted in pages, on its control port, 127.0.0.1 only). A badge is unique
// per event (fanout_load), so each accepted notification names its event; its token must be that
// event's device (the device of the registration the callback was posted to: badges belong to
// registrations, fanout_common.hpp), or it counts as stray.
//
// Prints one JSON line:
//   notifications: accepted (apns-sim's count), read, matched, stray, duplicates;
//   events: sent, answered OK, delivered to the event's device, not delivered (coalesced: a newer
//           badge of the registration was sent instead), delivered although not answered OK;
//   latency_ms over matched notifications, from the event's due time (open loop: includes any
//           wait in the client) to apns-sim's received_ms; latency_from_send_ms from the write;
//   lost: for every registration, the newest event answered OK must have reached its device (its
//         badge, or the badge of a later event of the same registration): the devices where it
//         did not (lost_mailboxes: the mailboxes with such a device). apns-sim's received_ms has a
//         resolution of 1 ms.
#include <sys/socket.h>
#include <sys/time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "fanout_common.hpp"
#include "sim_control.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

constexpr std::size_t kPage = 20000;

struct Event {
  std::uint32_t mailbox = 0;  // 0: no such event
  std::uint8_t slot = 0;
  bool ok = false;
  std::uint8_t delivered = 0;  // one bit per device slot
  std::int64_t due_us = 0;
  std::int64_t sent_us = 0;
};

double percentile_ms(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1]) / 1000.0;
}

json summary(std::vector<std::int64_t>& v) {
  std::sort(v.begin(), v.end());
  auto r3 = [](double x) { return std::round(x * 1000) / 1000; };
  return {{"p50", r3(percentile_ms(v, 50))},
          {"p90", r3(percentile_ms(v, 90))},
          {"p99", r3(percentile_ms(v, 99))},
          {"max", r3(v.empty() ? 0 : static_cast<double>(v.back()) / 1000.0)},
          {"samples", v.size()}};
}

}  // namespace

int main(int argc, char** argv) {
  std::string events_path;
  std::uint16_t control_port = 0;
  std::uint64_t since = 0;
  CLI::App app{"fanout_check: apns-sim's accepted notifications against fanout_load's events"};
  app.add_option("--events", events_path, "fanout_load --events file")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--control-port", control_port, "apns-sim control port (127.0.0.1)")->required();
  app.add_option("--since", since, "read records after this seq")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    // ---- the events
    std::vector<Event> events;
    std::int64_t badge_base = -1;
    std::uint64_t sent = 0, ok = 0;
    {
      std::ifstream in(events_path);
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream f(line);
        std::uint64_t k = 0, mailbox = 0;
        unsigned slot = 0, status = 0;
        std::int64_t badge = 0, due = 0, sent_us = 0, done = 0;
        std::string result;
        if (!(f >> k >> mailbox >> slot >> badge >> due >> sent_us >> done >> status >> result))
          throw std::runtime_error(events_path + ": bad line: " + line);
        if (badge_base < 0) badge_base = badge - static_cast<std::int64_t>(k);
        if (badge - static_cast<std::int64_t>(k) != badge_base)
          throw std::runtime_error(events_path + ": badges are not base + k");
        if (result == "skipped") continue;
        if (k >= events.size()) events.resize(k + 1);
        Event& e = events[k];
        e.mailbox = static_cast<std::uint32_t>(mailbox);
        e.slot = static_cast<std::uint8_t>(slot);
        e.ok = result == "ok";
        e.due_us = due;
        e.sent_us = sent_us;
        ++sent;
        if (e.ok) ++ok;
      }
    }
    if (badge_base < 0) badge_base = 0;

    // ---- what apns-sim accepted
    fanout::SimControl control(control_port);
    const json stats = control.get("/stats");
    std::unordered_map<std::uint32_t, std::array<std::string, 3>> tokens;
    auto token_slot = [&](std::uint32_t mailbox, const std::string& token) -> int {
      auto [it, fresh] = tokens.try_emplace(mailbox);
      if (fresh) {
        for (unsigned s = 0; s < fanout::devices_of(mailbox); ++s)
          it->second[s] = fanout::token(mailbox, s);
      }
      for (unsigned s = 0; s < fanout::devices_of(mailbox); ++s)
        if (it->second[s] == token) return static_cast<int>(s);
      return -1;
    };
    std::uint64_t read = 0, matched = 0, stray = 0, duplicates = 0, from_non_ok = 0;
    std::int64_t first_ms = 0, last_ms = 0;
    std::vector<std::int64_t> latency, latency_send;
    latency.reserve(2 * sent + 16);
    latency_send.reserve(2 * sent + 16);
    for (std::uint64_t at = since;;) {
      const json page =
          control.get("/accepted?since=" + std::to_string(at) + "&limit=" + std::to_string(kPage));
      const auto& records = page.at("records");
      if (records.empty()) break;
      for (const auto& r : records) {
        ++read;
        const std::int64_t received_ms = r.at("received_ms").get<std::int64_t>();
        if (first_ms == 0 || received_ms < first_ms) first_ms = received_ms;
        last_ms = std::max(last_ms, received_ms);
        const json payload = json::parse(r.at("payload").get<std::string>(), nullptr, false);
        if (!payload.is_object() || !payload.contains("aps") || !payload["aps"].contains("badge")) {
          ++stray;
          continue;
        }
        const std::int64_t k = payload["aps"]["badge"].get<std::int64_t>() - badge_base;
        if (k < 0 || k >= static_cast<std::int64_t>(events.size()) || events[k].mailbox == 0) {
          ++stray;
          continue;
        }
        Event& e = events[k];
        const int slot = token_slot(e.mailbox, r.at("token").get<std::string>());
        if (slot != static_cast<int>(e.slot)) {
          ++stray;  // another mailbox's device, or another registration's of the same mailbox
          continue;
        }
        if (e.delivered & (1u << slot)) {
          ++duplicates;
          continue;
        }
        e.delivered |= static_cast<std::uint8_t>(1u << slot);
        ++matched;
        if (!e.ok) ++from_non_ok;
        latency.push_back(std::max<std::int64_t>(0, received_ms * 1000 - e.due_us));
        latency_send.push_back(std::max<std::int64_t>(0, received_ms * 1000 - e.sent_us));
      }
      at = page.at("last_seq").get<std::uint64_t>();
    }

    // ---- per event and per registration
    std::uint64_t all = 0, some = 0, none = 0, expected = 0, delivered_ok = 0;
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> by_registration;  // k in order
    for (std::size_t k = 0; k < events.size(); ++k) {
      const Event& e = events[k];
      if (e.mailbox == 0) continue;
      by_registration[fanout::registration_id(e.mailbox, e.slot)].push_back(
          static_cast<std::uint32_t>(k));
      if (!e.ok) continue;
      const bool got = (e.delivered >> e.slot) & 1u;
      ++expected;
      delivered_ok += got ? 1 : 0;
      if (got)
        ++all;
      else
        ++none;
    }
    std::uint64_t lost_devices = 0, registrations_ok = 0;
    std::unordered_map<std::uint32_t, bool> lost_in_mailbox;
    for (const auto& [registration, ks] : by_registration) {
      std::size_t newest = ks.size();
      for (std::size_t i = ks.size(); i-- > 0;) {
        if (events[ks[i]].ok) {
          newest = i;
          break;
        }
      }
      if (newest == ks.size()) continue;  // nothing answered OK
      ++registrations_ok;
      bool got = false;
      for (std::size_t i = newest; i < ks.size(); ++i) {
        const Event& e = events[ks[i]];
        got = got || ((e.delivered >> e.slot) & 1u);
      }
      if (!got) {
        ++lost_devices;
        lost_in_mailbox[events[ks[newest]].mailbox] = true;
      }
    }
    const std::uint64_t lost_mailboxes = lost_in_mailbox.size();

    json out = {
        {"tool", "fanout_check"},
        {"badge_base", badge_base},
        {"sim_accepted", stats.value("accepted", 0)},
        {"sim_recorded", stats.value("recorded", 0)},
        {"sim_by_status", stats.value("by_status", json::object())},
        {"records_read", read},
        {"matched", matched},
        {"stray", stray},
        {"duplicates", duplicates},
        {"events_sent", sent},
        {"events_ok", ok},
        {"events_delivered_all", all},
        {"events_delivered_some", some},
        {"events_coalesced", none},
        {"notifications_expected", expected},
        {"notifications_delivered", delivered_ok},
        {"notifications_coalesced", expected - delivered_ok},
        {"delivered_not_ok", from_non_ok},
        {"registrations_ok", registrations_ok},
        {"lost_devices", lost_devices},
        {"lost_mailboxes", lost_mailboxes},
        {"received_span_s", first_ms ? static_cast<double>(last_ms - first_ms) / 1000.0 : 0.0},
        {"latency_ms", summary(latency)},
        {"latency_from_send_ms", summary(latency_send)}};
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "fanout_check: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
