// libFuzzer target for the EWS SendNotification parser and the SOAP fault builder: no crash, no
// sanitizer report, and the invariants below hold for every input.
#include <tinyxml2.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "common/text.hpp"
#include "ews/send_notification.hpp"
#include "ews/xml_guard.hpp"

namespace {

using namespace mp::ews;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

// Accepted bodies are valid UTF-8, and character references cannot smuggle anything else in.
std::size_t touch(const std::string& s) {
  require(mp::is_valid_utf8(s));
  return s.size();
}
std::size_t touch(const std::optional<std::string>& s) {
  return s ? touch(*s) + 1 : 0;
}

std::size_t touch(const SendNotification& parsed) {
  std::size_t sum = touch(parsed.server_version);
  require(!parsed.messages.empty());
  for (const ResponseMessage& m : parsed.messages) {
    require(m.response_class == "Success" || m.response_class == "Warning" ||
            m.response_class == "Error");
    sum += touch(m.response_code) + touch(m.message_text) + touch(m.subscription_id());
    for (const auto& [name, value] : m.message_xml_values) sum += touch(name) + touch(value);
    if (!m.notification) continue;
    const Notification& n = *m.notification;
    require(!n.subscription_id.empty());
    sum += touch(n.subscription_id) + touch(n.previous_watermark) + (n.more_events ? 1 : 0);
    std::size_t unknown = 0;
    for (const Event& e : n.events) {
      const std::string_view name = event_type_name(e.type);
      require(!name.empty());
      if (e.type == EventType::unknown) {
        ++unknown;
      } else {
        require(!e.watermark.empty());
        require(e.element == std::string(name) + "Event");
      }
      require(!e.unread_count || (*e.unread_count >= 0 && e.type == EventType::modified));
      sum += touch(e.element) + touch(e.watermark) + touch(e.timestamp) + touch(e.item_id) +
             touch(e.folder_id) + touch(e.parent_folder_id) + touch(e.old_item_id) +
             touch(e.old_folder_id) + touch(e.old_parent_folder_id);
    }
    require(unknown == n.unknown_events);
  }
  return sum;
}

void check(std::string_view input, const ParseLimits& limits) {
  auto result = parse_send_notification(input, limits);
  if (const auto* parsed = std::get_if<SendNotification>(&result)) {
    require(input.size() <= limits.max_bytes);
    require(mp::is_valid_utf8(input));
    touch(*parsed);
    return;
  }
  const ParseError& error = std::get<ParseError>(result);
  require(refusal_name(error.refusal)[0] != '\0');
  require(!error.message.empty());
  for (char c : error.message) require(c >= 0x20 && c < 0x7F);  // never body bytes
}

// True when `text` is something XML 1.0 can carry verbatim (what build_fault must round-trip).
bool xml_safe(std::string_view text) {
  if (!mp::is_valid_utf8(text)) return false;
  for (unsigned char c : text) {
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return text.find("\xEF\xBF\xBE") == std::string_view::npos &&
         text.find("\xEF\xBF\xBF") == std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check(input, ParseLimits{});
  check(input, ParseLimits{.max_bytes = 2048, .max_depth = 7, .max_elements = 40});

  // The fault must be well-formed for any reason (and any faultcode), and strict enough that
  // our own guard accepts it: the parser then refuses it only as not a SendNotification.
  const std::string fault = build_fault(input.substr(0, 12), input);
  tinyxml2::XMLDocument doc(true, tinyxml2::PRESERVE_WHITESPACE);
  require(doc.Parse(fault.data(), fault.size()) == tinyxml2::XML_SUCCESS);
  auto reparsed = parse_send_notification(fault, ParseLimits{.max_bytes = 64 * 1024 * 1024});
  require(std::holds_alternative<ParseError>(reparsed) &&
          std::get<ParseError>(reparsed).refusal == Refusal::not_soap);
  if (xml_safe(input)) {
    const auto* envelope = doc.RootElement();
    const auto* reason =
        envelope->FirstChildElement()->FirstChildElement()->FirstChildElement("faultstring");
    require(reason != nullptr);
    // tinyxml2 drops a text node that is only literal whitespace (we escape only CR).
    const bool dropped = input.find_first_not_of(" \t\n") == std::string_view::npos;
    require(std::string_view(reason->GetText() ? reason->GetText() : "") ==
            (dropped ? std::string_view{} : input));
  }
  return 0;
}
