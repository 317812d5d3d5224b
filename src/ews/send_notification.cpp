// EWS SendNotification: the namespace-aware reader over tinyxml2, and the SOAP replies.
#include "ews/send_notification.hpp"

#include <tinyxml2.h>

#include <array>
#include <charconv>
#include <memory>
#include <new>

#include "common/text.hpp"
#include "ews/xml_guard.hpp"

namespace mp::ews {
namespace {

using tinyxml2::XMLElement;

constexpr std::string_view kSoap11Ns = "http://schemas.xmlsoap.org/soap/envelope/";
constexpr std::string_view kSoap12Ns = "http://www.w3.org/2003/05/soap-envelope";
constexpr std::string_view kMessagesNs =
    "http://schemas.microsoft.com/exchange/services/2006/messages";
constexpr std::string_view kTypesNs = "http://schemas.microsoft.com/exchange/services/2006/types";
constexpr std::string_view kXmlNs = "http://www.w3.org/XML/1998/namespace";

struct EventKind {
  std::string_view element;
  EventType type;
};
constexpr std::array<EventKind, 8> kEventKinds{{
    {"StatusEvent", EventType::status},
    {"NewMailEvent", EventType::new_mail},
    {"CreatedEvent", EventType::created},
    {"DeletedEvent", EventType::deleted},
    {"ModifiedEvent", EventType::modified},
    {"MovedEvent", EventType::moved},
    {"CopiedEvent", EventType::copied},
    {"FreeBusyChangedEvent", EventType::free_busy_changed},
}};

// The in-scope xmlns declarations of the element being visited and its ancestors. tinyxml2 9
// is not namespace-aware, so names are resolved here; views point into the parsed document.
class NamespaceScope {
 public:
  NamespaceScope() { bindings_.reserve(16); }

  std::size_t enter(const XMLElement& element) {
    const std::size_t mark = bindings_.size();
    for (auto* a = element.FirstAttribute(); a != nullptr; a = a->Next()) {
      const std::string_view name = a->Name();
      if (!name.starts_with("xmlns")) continue;
      if (name.size() == 5) {
        bindings_.push_back({std::string_view{}, a->Value()});
      } else if (name[5] == ':') {
        bindings_.push_back({name.substr(6), a->Value()});
      }
    }
    return mark;
  }
  void leave(std::size_t mark) { bindings_.resize(mark); }

  // The URI bound to `prefix` ("" = no namespace), or nothing if the prefix is undeclared.
  std::optional<std::string_view> uri_of(std::string_view prefix) const {
    for (auto it = bindings_.rbegin(); it != bindings_.rend(); ++it) {
      if (it->prefix == prefix) return it->uri;
    }
    if (prefix.empty()) return std::string_view{};
    if (prefix == "xml") return kXmlNs;
    return std::nullopt;
  }

 private:
  struct Binding {
    std::string_view prefix;  // empty for the default namespace
    std::string_view uri;
  };
  std::vector<Binding> bindings_;
};

struct ExpandedName {
  std::optional<std::string_view> ns;  // nothing when the prefix is undeclared
  std::string_view local;

  bool is(std::string_view want_ns, std::string_view want_local) const {
    return ns && *ns == want_ns && local == want_local;
  }
};

ExpandedName expand(const XMLElement& element, const NamespaceScope& scope) {
  const std::string_view qname = element.Name();
  const std::size_t colon = qname.find(':');
  if (colon == std::string_view::npos) return {scope.uri_of({}), qname};
  return {scope.uri_of(qname.substr(0, colon)), qname.substr(colon + 1)};
}

// Calls visit(child, name) for each child element with the child's declarations in scope;
// stops early when visit returns false.
template <class Visit>
bool for_each_child(NamespaceScope& scope, const XMLElement& parent, Visit&& visit) {
  for (auto* child = parent.FirstChildElement(); child != nullptr;
       child = child->NextSiblingElement()) {
    const std::size_t mark = scope.enter(*child);
    const bool go_on = visit(*child, expand(*child, scope));
    scope.leave(mark);
    if (!go_on) return false;
  }
  return true;
}

// All character data directly inside `element` (text and CDATA), as XML defines its value.
std::string text_of(const XMLElement& element) {
  std::string out;
  for (auto* node = element.FirstChild(); node != nullptr; node = node->NextSibling()) {
    if (const auto* text = node->ToText()) out += text->Value();
  }
  return out;
}

std::string_view trim_xml_space(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  const std::size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

std::optional<std::string> attribute(const XMLElement& element, const char* name) {
  const char* value = element.Attribute(name);  // unprefixed names: attributes in no namespace
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// Reads the tree; the first structural problem ends the walk with a not_soap refusal.
class SendNotificationReader {
 public:
  std::optional<ParseError> read(const XMLElement& root, SendNotification& out) {
    const std::size_t mark = scope_.enter(root);
    read_envelope(root, expand(root, scope_), out);
    scope_.leave(mark);
    return std::move(error_);
  }

 private:
  bool fail(std::string message) {
    if (!error_) error_ = ParseError{Refusal::not_soap, std::move(message)};
    return false;
  }

  // A single-valued element seen twice is a schema violation that could hide a second value.
  template <class T>
  bool once(std::optional<T>& slot, T value, const char* element) {
    if (slot) return fail(std::string("more than one ") + element + " element");
    slot = std::move(value);
    return true;
  }

  bool read_envelope(const XMLElement& root, const ExpandedName& name, SendNotification& out) {
    if (name.local == "Envelope" && name.ns == kSoap12Ns) {
      return fail("a SOAP 1.2 envelope; EWS push notifications use SOAP 1.1");
    }
    if (!name.is(kSoap11Ns, "Envelope")) return fail("the root element is not a SOAP 1.1 Envelope");
    const XMLElement* header = nullptr;
    const XMLElement* body = nullptr;
    bool ok = for_each_child(scope_, root, [&](const XMLElement& child, const ExpandedName& n) {
      if (n.is(kSoap11Ns, "Header")) {
        if (header != nullptr) return fail("more than one soap:Header element");
        header = &child;
        return read_header(child, out);
      }
      if (n.is(kSoap11Ns, "Body")) {
        if (body != nullptr) return fail("more than one soap:Body element");
        body = &child;
        return read_body(child, out);
      }
      return true;
    });
    if (!ok) return false;
    if (body == nullptr) return fail("the Envelope has no SOAP 1.1 Body");
    return true;
  }

  bool read_header(const XMLElement& header, SendNotification& out) {
    std::optional<std::string> version;
    return for_each_child(scope_, header, [&](const XMLElement& child, const ExpandedName& n) {
      if (!n.is(kTypesNs, "RequestServerVersion")) return true;
      if (!once(version, attribute(child, "Version").value_or(""), "RequestServerVersion")) {
        return false;
      }
      out.server_version = *version;
      return true;
    });
  }

  bool read_body(const XMLElement& body, SendNotification& out) {
    bool found = false;
    bool fault = false;
    bool ok = for_each_child(scope_, body, [&](const XMLElement& child, const ExpandedName& n) {
      if (n.is(kSoap11Ns, "Fault")) fault = true;
      if (!n.is(kMessagesNs, "SendNotification")) return true;
      if (found) return fail("more than one SendNotification element");
      found = true;
      return read_send_notification(child, out);
    });
    if (!ok) return false;
    if (!found && fault) return fail("the Body holds a SOAP Fault, not a SendNotification");
    if (!found) return fail("the Body holds no SendNotification in the EWS messages namespace");
    return true;
  }

  bool read_send_notification(const XMLElement& send, SendNotification& out) {
    bool found = false;
    bool ok = for_each_child(scope_, send, [&](const XMLElement& child, const ExpandedName& n) {
      if (!n.is(kMessagesNs, "ResponseMessages")) return true;
      if (found) return fail("more than one ResponseMessages element");
      found = true;
      return read_response_messages(child, out);
    });
    if (!ok) return false;
    if (!found) return fail("the SendNotification has no ResponseMessages");
    if (out.messages.empty()) {
      return fail("ResponseMessages holds no SendNotificationResponseMessage");
    }
    return true;
  }

  bool read_response_messages(const XMLElement& messages, SendNotification& out) {
    return for_each_child(scope_, messages, [&](const XMLElement& child, const ExpandedName& n) {
      if (!n.is(kMessagesNs, "SendNotificationResponseMessage")) return true;
      ResponseMessage message;
      if (!read_response_message(child, message)) return false;
      out.messages.push_back(std::move(message));
      return true;
    });
  }

  bool read_response_message(const XMLElement& element, ResponseMessage& out) {
    const char* response_class = element.Attribute("ResponseClass");
    if (response_class == nullptr) {
      return fail("a SendNotificationResponseMessage without ResponseClass");
    }
    const std::string_view cls = trim_xml_space(response_class);
    if (cls != "Success" && cls != "Warning" && cls != "Error") {
      return fail("ResponseClass is not Success, Warning or Error");
    }
    out.response_class = std::string(cls);
    std::optional<std::string> code;
    std::optional<std::string> message_text;
    bool saw_message_xml = false;
    bool ok = for_each_child(scope_, element, [&](const XMLElement& child, const ExpandedName& n) {
      if (!n.ns || *n.ns != kMessagesNs) return true;
      if (n.local == "ResponseCode") {
        return once(code, std::string(trim_xml_space(text_of(child))), "ResponseCode");
      }
      if (n.local == "MessageText") return once(message_text, text_of(child), "MessageText");
      if (n.local == "MessageXml") {
        if (saw_message_xml) return fail("more than one MessageXml element");
        saw_message_xml = true;
        return read_message_xml(child, out);
      }
      if (n.local == "Notification") {
        if (out.notification) return fail("more than one Notification in a response message");
        out.notification.emplace();
        return read_notification(child, *out.notification);
      }
      return true;  // DescriptiveLinkKey and anything newer
    });
    if (!ok) return false;
    out.response_code = code.value_or("");
    out.message_text = std::move(message_text);
    return true;
  }

  bool read_message_xml(const XMLElement& element, ResponseMessage& out) {
    return for_each_child(scope_, element, [&](const XMLElement& child, const ExpandedName& n) {
      if (!n.is(kTypesNs, "Value")) return true;
      const char* name = child.Attribute("Name");
      if (name != nullptr) out.message_xml_values.try_emplace(name, text_of(child));
      return true;
    });
  }

  bool read_notification(const XMLElement& element, Notification& out) {
    std::optional<std::string> subscription_id;
    std::optional<std::string> previous_watermark;
    std::optional<bool> more_events;
    bool ok = for_each_child(scope_, element, [&](const XMLElement& child, const ExpandedName& n) {
      const bool types = n.ns && *n.ns == kTypesNs;
      if (types && n.local == "SubscriptionId") {
        return once(subscription_id, text_of(child), "SubscriptionId");
      }
      if (types && n.local == "PreviousWatermark") {
        return once(previous_watermark, text_of(child), "PreviousWatermark");
      }
      if (types && n.local == "MoreEvents") {
        const std::string text = text_of(child);
        const std::string_view value = trim_xml_space(text);
        // xs:boolean: true, false, 1, 0.
        if (value == "true" || value == "1") return once(more_events, true, "MoreEvents");
        if (value == "false" || value == "0") return once(more_events, false, "MoreEvents");
        return fail("MoreEvents is not true or false");
      }
      return read_event(child, n, out);
    });
    if (!ok) return false;
    if (!subscription_id || subscription_id->empty()) {
      return fail("a Notification without SubscriptionId");
    }
    out.subscription_id = std::move(*subscription_id);
    out.previous_watermark = previous_watermark.value_or("");
    out.more_events = more_events.value_or(false);
    return true;
  }

  bool read_event(const XMLElement& element, const ExpandedName& name, Notification& out) {
    Event event;
    event.element = std::string(name.local);
    const EventKind* kind = nullptr;
    if (name.ns && *name.ns == kTypesNs) {
      for (const auto& k : kEventKinds) {
        if (k.element == name.local) kind = &k;
      }
    }
    // Unknown events are kept and counted but never judged: their shape is not ours to know.
    const bool strict = kind != nullptr;
    event.type = strict ? kind->type : EventType::unknown;
    const char* what = strict ? kind->element.data() : "event";
    std::optional<std::string> watermark;
    const auto id_of = [&](const XMLElement& child, std::optional<std::string>& slot,
                           const char* id_element) {
      auto id = attribute(child, "Id");
      if (!id || id->empty()) {
        if (!strict) return true;
        return fail(std::string(id_element) + " without an Id attribute in a " + what);
      }
      if (slot) {
        return !strict || fail(std::string("more than one ") + id_element + " in a " + what);
      }
      slot = std::move(id);
      return true;
    };
    bool ok = for_each_child(scope_, element, [&](const XMLElement& child, const ExpandedName& n) {
      if (!n.ns || *n.ns != kTypesNs) return true;
      const std::string_view local = n.local;
      if (local == "Watermark") {
        if (watermark) return !strict || fail(std::string("more than one Watermark in a ") + what);
        watermark = text_of(child);
        return true;
      }
      if (local == "TimeStamp") {
        if (event.timestamp) {
          return !strict || fail(std::string("more than one TimeStamp in a ") + what);
        }
        event.timestamp = text_of(child);
        return true;
      }
      if (local == "ItemId") return id_of(child, event.item_id, "ItemId");
      if (local == "FolderId") return id_of(child, event.folder_id, "FolderId");
      if (local == "ParentFolderId") return id_of(child, event.parent_folder_id, "ParentFolderId");
      if (local == "OldItemId") return id_of(child, event.old_item_id, "OldItemId");
      if (local == "OldFolderId") return id_of(child, event.old_folder_id, "OldFolderId");
      if (local == "OldParentFolderId") {
        return id_of(child, event.old_parent_folder_id, "OldParentFolderId");
      }
      if (local == "UnreadCount" && event.type == EventType::modified) {
        if (event.unread_count) return fail("more than one UnreadCount in a ModifiedEvent");
        const std::string text = text_of(child);
        std::string_view digits = trim_xml_space(text);
        if (digits.starts_with('+')) digits.remove_prefix(1);
        std::int64_t value = 0;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (digits.empty() || digits.front() == '-' || ec != std::errc{} ||
            end != digits.data() + digits.size()) {
          return fail("UnreadCount is not a non-negative integer");
        }
        event.unread_count = value;
        return true;
      }
      return true;
    });
    if (!ok) return false;
    if (strict && (!watermark || watermark->empty())) {
      return fail(std::string("a ") + what + " without Watermark");
    }
    event.watermark = watermark.value_or("");
    if (!strict) ++out.unknown_events;
    out.events.push_back(std::move(event));
    return true;
  }

  NamespaceScope scope_;
  std::optional<ParseError> error_;
};

std::variant<SendNotification, ParseError> parse_checked(std::string_view body,
                                                         const ParseLimits& limits) {
  if (auto refused = detail::check_untrusted_xml(body, limits)) return std::move(*refused);

  // Entities stay on for the five predefined ones and character references; the guard has
  // already refused every DTD, so nothing else can expand.
  auto doc = std::make_unique<tinyxml2::XMLDocument>(true, tinyxml2::PRESERVE_WHITESPACE);
  if (doc->Parse(body.data(), body.size()) != tinyxml2::XML_SUCCESS) {
    const Refusal refusal = doc->ErrorID() == tinyxml2::XML_ELEMENT_DEPTH_EXCEEDED
                                ? Refusal::too_deep
                                : Refusal::malformed_xml;
    // ErrorStr() can quote element names from the body; the error name and line cannot.
    return ParseError{refusal, std::string("not well-formed XML: tinyxml2 ") + doc->ErrorName() +
                                   " at line " + std::to_string(doc->ErrorLineNum())};
  }
  std::size_t roots = 0;
  for (auto* node = doc->FirstChild(); node != nullptr; node = node->NextSibling()) {
    if (node->ToElement() != nullptr) ++roots;
    if (node->ToText() != nullptr) {
      return ParseError{Refusal::malformed_xml, "not well-formed XML: text outside the root"};
    }
  }
  if (roots != 1) {
    return ParseError{Refusal::malformed_xml, "not well-formed XML: not exactly one root element"};
  }

  SendNotification out;
  if (auto error = SendNotificationReader{}.read(*doc->RootElement(), out)) {
    return std::move(*error);
  }
  return out;
}

void append_escaped_text(std::string& out, std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '&':
          out += "&amp;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&apos;";
          break;
        case '\r':
          out += "&#13;";
          break;  // survives end-of-line normalisation
        case '\t':
        case '\n':
          out += static_cast<char>(c);
          break;
        default:
          if (c < 0x20) {
            out += "\xEF\xBF\xBD";  // XML 1.0 cannot carry C0 controls at all
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // Copy well-formed UTF-8 sequences except U+FFFE/U+FFFF; replace anything else.
    const std::size_t len = utf8_sequence_at(text, i);
    const std::string_view seq = text.substr(i, len);
    if (len == 0 || seq == "\xEF\xBF\xBE" || seq == "\xEF\xBF\xBF") {
      out += "\xEF\xBF\xBD";
      i += len == 0 ? 1 : len;
    } else {
      out += seq;
      i += len;
    }
  }
}

}  // namespace

const char* event_type_name(EventType type) noexcept {
  switch (type) {
    case EventType::status:
      return "Status";
    case EventType::new_mail:
      return "NewMail";
    case EventType::created:
      return "Created";
    case EventType::deleted:
      return "Deleted";
    case EventType::modified:
      return "Modified";
    case EventType::moved:
      return "Moved";
    case EventType::copied:
      return "Copied";
    case EventType::free_busy_changed:
      return "FreeBusyChanged";
    case EventType::unknown:
      break;
  }
  return "Unknown";
}

const char* refusal_name(Refusal r) noexcept {
  switch (r) {
    case Refusal::too_large:
      return "too_large";
    case Refusal::doctype:
      return "doctype";
    case Refusal::invalid_utf8:
      return "invalid_utf8";
    case Refusal::too_deep:
      return "too_deep";
    case Refusal::too_many_elements:
      return "too_many_elements";
    case Refusal::value_too_long:
      return "value_too_long";
    case Refusal::malformed_xml:
      return "malformed_xml";
    case Refusal::not_soap:
      return "not_soap";
  }
  return "unknown";
}

std::optional<std::string> ResponseMessage::subscription_id() const {
  if (notification) return notification->subscription_id;
  if (auto it = message_xml_values.find("SubscriptionId"); it != message_xml_values.end()) {
    return it->second;
  }
  return std::nullopt;
}

std::variant<SendNotification, ParseError> parse_send_notification(std::string_view body,
                                                                   const ParseLimits& limits) {
  try {
    return parse_checked(body, limits);
  } catch (const std::bad_alloc&) {
    return ParseError{Refusal::too_large, "out of memory while parsing the body"};
  } catch (...) {
    return ParseError{Refusal::malformed_xml, "internal error while parsing the body"};
  }
}

std::string build_reply(SubscriptionStatus status) {
  const std::string_view value = status == SubscriptionStatus::ok ? "OK" : "Unsubscribe";
  std::string out;
  out.reserve(400);
  out += R"(<?xml version="1.0" encoding="utf-8"?>)"
         R"(<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" )"
         R"(xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">)"
         "<soap:Body><m:SendNotificationResult><m:SubscriptionStatus>";
  out += value;
  out += "</m:SubscriptionStatus></m:SendNotificationResult></soap:Body></soap:Envelope>";
  return out;
}

std::string build_fault(std::string_view faultcode, std::string_view reason) {
  // The SOAP 1.1 codes are QNames in the envelope namespace; accept them bare or prefixed.
  std::string code;
  for (std::string_view known : {"Client", "Server", "VersionMismatch", "MustUnderstand"}) {
    if (faultcode == known) code = "soap:" + std::string(known);
  }
  std::string out;
  out.reserve(300 + reason.size());
  out += R"(<?xml version="1.0" encoding="utf-8"?>)"
         R"(<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">)"
         "<soap:Body><soap:Fault><faultcode>";
  if (code.empty()) {
    append_escaped_text(out, faultcode);
  } else {
    out += code;
  }
  out += "</faultcode><faultstring>";
  append_escaped_text(out, reason);
  out += "</faultstring></soap:Fault></soap:Body></soap:Envelope>";
  return out;
}

}  // namespace mp::ews
