// libFuzzer target for what the Graph listener parses from the network: notification bodies
// (parse_notifications), the validation token of a request target, dates, resource paths, and
// the unread set fed with the parsed items and with its stored bytes. No crash, no sanitizer
// report, and for every input:
//   - an accepted body's strings are printable ASCII within the limit;
//   - a refusal's message never quotes the body (it is at most a sentence);
//   - an accepted validation token is non-empty, within its limit, UTF-8, and free of control
//     characters and markup;
//   - the unread set's count equals baseline + unread entries and survives encode/decode.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <variant>

#include "common/text.hpp"
#include "fuzz_require.hpp"
#include "graph/notification.hpp"
#include "graph/unread_set.hpp"

namespace {

using namespace mp::graph;

void check_string(const std::string& s, const ParseLimits& limits) {
  FUZZ_REQUIRE(s.size() <= limits.max_string);
  FUZZ_REQUIRE(mp::is_printable_ascii(std::string_view(s)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  ParseLimits limits;
  limits.max_body_bytes = 16384;
  auto parsed = parse_notifications(input, limits);
  UnreadSet set;
  if (auto* n = std::get_if<Notifications>(&parsed)) {
    FUZZ_REQUIRE(n->items.size() <= limits.max_items);
    for (const Item& item : n->items) {
      check_string(item.subscription_id, limits);
      FUZZ_REQUIRE(!item.subscription_id.empty());
      check_string(item.client_state, limits);
      check_string(item.tenant_id, limits);
      check_string(item.message_id, limits);
      if (item.change == ChangeType::created) set.created(UnreadSet::digest(item.message_id));
      if (item.change == ChangeType::deleted) set.deleted(UnreadSet::digest(item.message_id));
    }
  } else {
    const ParseError& e = std::get<ParseError>(parsed);
    FUZZ_REQUIRE(!e.message.empty() && e.message.size() < 200);
    FUZZ_REQUIRE(refusal_name(e.refusal) != nullptr);
  }
  FUZZ_REQUIRE(set.count() == set.baseline() + set.unread_entries());

  // The input as a request target's query.
  const std::string target = "/graph/v1/notify/x?validationToken=" + std::string(input);
  if (auto token = validation_token(target, 1024)) {
    if (auto* t = std::get_if<std::string>(&*token)) {
      FUZZ_REQUIRE(!t->empty() && t->size() <= 1024);
      FUZZ_REQUIRE(mp::is_valid_utf8(*t));
      for (const char c : *t) FUZZ_REQUIRE(!mp::is_ascii_control(c) && c != '<' && c != '>');
    }
  }
  (void)parse_datetime(input);
  const std::string id = message_id_of_resource(input);
  FUZZ_REQUIRE(id.size() <= input.size());

  // The input as stored bytes of an unread set.
  const UnreadSet stored = UnreadSet::decode(input, static_cast<std::uint32_t>(size));
  FUZZ_REQUIRE(stored.unread_entries() <= UnreadSet::kMaxUnread);
  FUZZ_REQUIRE(stored.read_entries() <= UnreadSet::kMaxRead);
  const UnreadSet again = UnreadSet::decode(stored.encode(), stored.baseline());
  FUZZ_REQUIRE(again.count() == stored.count());
  FUZZ_REQUIRE(again.encode() == stored.encode());
  return 0;
}
