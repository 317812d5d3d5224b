// Small helpers shared by the ews unit tests: sample files, parse-or-fail, and a namespace-aware
// reader for SOAP replies that is independent of the parser under test.
#pragma once

#include <gtest/gtest.h>
#include <tinyxml2.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>

#include "ews/send_notification.hpp"

namespace mp::ews::test {

inline std::filesystem::path data_dir() {
  return std::filesystem::path(MAILPUSH_SOURCE_DIR) / "tests" / "data" / "ews";
}

inline std::string read_data_file(const std::string& name) {
  std::ifstream in(data_dir() / name, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << (data_dir() / name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Parses `body`, failing the test (with the refusal) when it is refused.
inline SendNotification must_parse(std::string_view body, const ParseLimits& limits = {}) {
  auto result = parse_send_notification(body, limits);
  if (auto* error = std::get_if<ParseError>(&result)) {
    ADD_FAILURE() << "refused (" << refusal_name(error->refusal) << "): " << error->message;
    return {};
  }
  return std::get<SendNotification>(std::move(result));
}

inline std::optional<ParseError> refusal_of(std::string_view body, const ParseLimits& limits = {}) {
  auto result = parse_send_notification(body, limits);
  if (auto* error = std::get_if<ParseError>(&result)) return *error;
  return std::nullopt;
}

#define EWS_SOAP11 "http://schemas.xmlsoap.org/soap/envelope/"
#define EWS_MSG "http://schemas.microsoft.com/exchange/services/2006/messages"
#define EWS_TYP "http://schemas.microsoft.com/exchange/services/2006/types"

// The real-capture shape: soap11 prefix, declarations on RequestServerVersion and
// SendNotification, one line.
inline std::string with_messages(const std::string& messages) {
  return R"(<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11=")" EWS_SOAP11
         R"("><soap11:Header><t:RequestServerVersion xmlns:m=")" EWS_MSG
         R"(" Version="Exchange2013" xmlns:t=")" EWS_TYP
         R"(" /></soap11:Header><soap11:Body><m:SendNotification xmlns:t=")" EWS_TYP
         R"(" xmlns:m=")" EWS_MSG R"("><m:ResponseMessages>)" +
         messages + "</m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>";
}

inline std::string with_notification(const std::string& children) {
  return with_messages(
      R"(<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification>)" +
      children + "</m:Notification></m:SendNotificationResponseMessage>");
}

inline std::string with_events(const std::string& events, const char* more_events = "false") {
  return with_notification(
      std::string("<t:SubscriptionId>SUB</t:SubscriptionId><t:PreviousWatermark>PW</"
                  "t:PreviousWatermark><t:MoreEvents>") +
      more_events + "</t:MoreEvents>" + events);
}

constexpr const char* kSoap11Ns = "http://schemas.xmlsoap.org/soap/envelope/";
constexpr const char* kMessagesNs = "http://schemas.microsoft.com/exchange/services/2006/messages";
constexpr const char* kTypesNs = "http://schemas.microsoft.com/exchange/services/2006/types";

// Resolves an element's namespace by walking its ancestors' xmlns attributes.
inline std::string namespace_of(const tinyxml2::XMLElement& element) {
  const std::string_view qname = element.Name();
  const auto colon = qname.find(':');
  const std::string attr =
      colon == std::string_view::npos ? "xmlns" : "xmlns:" + std::string(qname.substr(0, colon));
  for (const tinyxml2::XMLNode* node = &element; node != nullptr; node = node->Parent()) {
    if (const auto* e = node->ToElement()) {
      if (const char* uri = e->Attribute(attr.c_str())) return uri;
    }
  }
  return "";
}

inline std::string_view local_name(const tinyxml2::XMLElement& element) {
  const std::string_view qname = element.Name();
  const auto colon = qname.find(':');
  return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
}

inline const tinyxml2::XMLElement* child_named(const tinyxml2::XMLElement& parent, const char* ns,
                                               std::string_view local) {
  for (auto* c = parent.FirstChildElement(); c != nullptr; c = c->NextSiblingElement()) {
    if (namespace_of(*c) == ns && local_name(*c) == local) return c;
  }
  return nullptr;
}

// Envelope(soap 1.1)/Body/SendNotificationResult(m)/SubscriptionStatus(m) text, read by
// namespace; nothing when the reply does not have that shape or is not well-formed.
inline std::optional<std::string> reply_subscription_status(const std::string& xml) {
  tinyxml2::XMLDocument doc;
  if (doc.Parse(xml.data(), xml.size()) != tinyxml2::XML_SUCCESS) return std::nullopt;
  const auto* envelope = doc.RootElement();
  if (envelope == nullptr || namespace_of(*envelope) != kSoap11Ns ||
      local_name(*envelope) != "Envelope") {
    return std::nullopt;
  }
  const auto* body = child_named(*envelope, kSoap11Ns, "Body");
  const auto* result = body ? child_named(*body, kMessagesNs, "SendNotificationResult") : nullptr;
  const auto* status = result ? child_named(*result, kMessagesNs, "SubscriptionStatus") : nullptr;
  if (status == nullptr) return std::nullopt;
  return std::string(status->GetText() ? status->GetText() : "");
}

}  // namespace mp::ews::test
