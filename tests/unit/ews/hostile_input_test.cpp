// Hostile and broken bodies: each must get the right Refusal, a message a person can act on, and
// a message that never quotes the body (every body carries a marker that must not leak).
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "ews/send_notification.hpp"
#include "test_ews.hpp"

namespace mp::ews::test {
namespace {

constexpr const char* kMarker = "Zq7MARKERx";
const std::string M = kMarker;

struct HostileCase {
  std::string name;
  std::function<std::string()> body;
  Refusal refusal;
  ParseLimits limits{};
};

std::string repeat(std::string_view unit, std::size_t times) {
  std::string out;
  out.reserve(unit.size() * times);
  for (std::size_t i = 0; i < times; ++i) out += unit;
  return out;
}

std::string nested(std::size_t depth, const std::string& inside = "") {
  return repeat("<a>", depth) + inside + repeat("</a>", depth);
}

std::string attributes(int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out += " a" + std::to_string(i) + "=\"v\"";
  return out;
}

std::string status_body() {
  return read_data_file("05-exchangelib-test-status-s-prefix.xml");
}

std::string billion_laughs() {
  std::string dtd = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"" + M + "\">\n";
  for (int i = 1; i <= 9; ++i) {
    const std::string prev = i == 1 ? "lol" : "lol" + std::to_string(i - 1);
    dtd += " <!ENTITY lol" + std::to_string(i) + " \"" + repeat("&" + prev + ";", 10) + "\">\n";
  }
  return dtd + "]>\n<lolz>&lol9;</lolz>";
}

std::vector<HostileCase> hostile_cases() {
  const auto soap = [](const std::string& events) { return [=] { return with_events(events); }; };
  const auto message = [](const std::string& m) { return [=] { return with_messages(m); }; };
  return {
      // --- too_large: checked first, before anything reads the body.
      {"too_large_1MiB_plus",
       [] { return status_body() + "<!--" + repeat(M, 1024 * 1024 / M.size()) + "-->"; },
       Refusal::too_large},
      {"too_large_wins_over_doctype",
       [] { return "<!DOCTYPE x>" + repeat(M, 20); },
       Refusal::too_large,
       {.max_bytes = 100}},

      // --- doctype: no DTD, no entity, ever.
      {"billion_laughs", billion_laughs, Refusal::doctype},
      {"external_entity",
       [] {
         return "<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "
                "\"file:///etc/passwd\">]><foo>&xxe;" +
                M + "</foo>";
       },
       Refusal::doctype},
      {"external_dtd",
       [] { return "<!DOCTYPE foo SYSTEM \"http://" + M + ".example/x.dtd\"><foo/>"; },
       Refusal::doctype},
      {"html_page_with_doctype",
       [] { return "<!DOCTYPE html>\n<html><head><title>" + M + "</title></head></html>"; },
       Refusal::doctype},
      {"entity_declaration_without_doctype", [] { return "<a><!ENTITY x \"" + M + "\"></a>"; },
       Refusal::doctype},
      {"lowercase_doctype_in_comment", [] { return "<a><!-- <!doctype " + M + "> --></a>"; },
       Refusal::doctype},
      {"doctype_wins_over_invalid_utf8", [] { return "<!DOCTYPE x><a>" + M + "\xC0\xAF</a>"; },
       Refusal::doctype},

      // --- invalid_utf8.
      {"overlong_slash", [] { return "<a>" + M + "\xC0\xAF</a>"; }, Refusal::invalid_utf8},
      {"overlong_3_byte", [] { return "<a>" + M + "\xE0\x80\xAF</a>"; }, Refusal::invalid_utf8},
      {"overlong_4_byte", [] { return "<a>" + M + "\xF0\x80\x80\xAF</a>"; }, Refusal::invalid_utf8},
      {"lone_surrogate", [] { return "<a>" + M + "\xED\xA0\x80</a>"; }, Refusal::invalid_utf8},
      {"above_10FFFF", [] { return "<a>" + M + "\xF4\x90\x80\x80</a>"; }, Refusal::invalid_utf8},
      {"five_byte_form", [] { return "<a>" + M + "\xF8\x88\x80\x80\x80</a>"; },
       Refusal::invalid_utf8},
      {"truncated_sequence_at_end", [] { return "<a>" + M + "</a>\xE2\x82"; },
       Refusal::invalid_utf8},
      {"truncated_sequence_mid", [] { return "<a>" + M + "\xE2\x82</a>"; }, Refusal::invalid_utf8},
      {"stray_continuation", [] { return "<a>" + M + "\x80</a>"; }, Refusal::invalid_utf8},
      {"latin1_byte", [] { return "<a>caf\xE9 " + M + "</a>"; }, Refusal::invalid_utf8},
      {"utf16le_with_bom", [] { return std::string("\xFF\xFE<\0a\0/\0>\0", 10) + M; },
       Refusal::invalid_utf8},
      {"invalid_utf8_wins_over_depth", [] { return nested(1000, M + "\xC0\xAF"); },
       Refusal::invalid_utf8},

      // --- malformed_xml: declaration, then (after the depth pre-scan) everything else.
      {"encoding_iso_8859_1",
       [] { return "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>" + M + "</a>"; },
       Refusal::malformed_xml},
      {"encoding_utf16_on_utf8_bytes",
       [] { return "<?xml version='1.0' encoding='UTF-16'?><a>" + M + "</a>"; },
       Refusal::malformed_xml},
      {"encoding_wins_over_depth",
       [] { return "<?xml version=\"1.0\" encoding=\"windows-1252\"?>" + nested(1000, M); },
       Refusal::malformed_xml},
      {"declaration_version_with_url",
       [] { return read_data_file("03-workmail-docs-status-asfound.xml") + "<!--" + M + "-->"; },
       Refusal::malformed_xml},
      {"declaration_version_2", [] { return "<?xml version=\"2.0\"?><a>" + M + "</a>"; },
       Refusal::malformed_xml},
      {"declaration_without_version", [] { return "<?xml encoding=\"utf-8\"?><a>" + M + "</a>"; },
       Refusal::malformed_xml},
      {"declaration_not_at_start", [] { return "\n<?xml version=\"1.0\"?><a>" + M + "</a>"; },
       Refusal::malformed_xml},
      {"second_declaration",
       [] { return "<?xml version=\"1.0\"?><?xml version=\"1.0\"?><a>" + M + "</a>"; },
       Refusal::malformed_xml},
      {"empty_body", [] { return std::string(); }, Refusal::malformed_xml},
      {"only_whitespace", [] { return std::string(" \r\n\t \n"); }, Refusal::malformed_xml},
      {"plain_text", [] { return "hello " + M; }, Refusal::malformed_xml},
      {"json", [] { return "{\"marker\":\"" + M + "\"}"; }, Refusal::malformed_xml},
      {"mismatched_tag", [] { return "<a><b>" + M + "</a></b>"; }, Refusal::malformed_xml},
      {"missing_slash_like_sample_01",
       [] {
         return read_data_file("01-rooms-doc-exo-two-modified-asfound.xml") + "<!--" + M + "-->";
       },
       Refusal::malformed_xml},
      {"truncated_like_sample_12",
       [] {
         std::string body = status_body();
         body.replace(body.find("<s:Header>"), 10, "<s:Header><!--" + M + "-->");
         return body.substr(0, body.find("<m:Notification>") + 10);
       },
       Refusal::malformed_xml},
      {"unclosed_root", [] { return "<a>" + M; }, Refusal::malformed_xml},
      {"control_character", [] { return "<a>" + M + "\x01</a>"; }, Refusal::malformed_xml},
      {"nul_byte", [] { return "<a>" + M + std::string(1, '\0') + "</a><b>" + M + "</b>"; },
       Refusal::malformed_xml},
      {"u_fffe", [] { return "<a>" + M + "\xEF\xBF\xBE</a>"; }, Refusal::malformed_xml},
      {"bare_ampersand", [] { return "<a>" + M + " & co</a>"; }, Refusal::malformed_xml},
      {"undeclared_entity", [] { return "<a>&nbsp;" + M + "</a>"; }, Refusal::malformed_xml},
      {"char_ref_to_nul", [] { return "<a>&#0;" + M + "</a>"; }, Refusal::malformed_xml},
      {"char_ref_to_surrogate", [] { return "<a>&#xD800;" + M + "</a>"; }, Refusal::malformed_xml},
      {"char_ref_above_max", [] { return "<a>&#x110000;" + M + "</a>"; }, Refusal::malformed_xml},
      {"char_ref_unterminated", [] { return "<a>&#65" + M + "</a>"; }, Refusal::malformed_xml},
      {"undeclared_entity_in_attribute", [] { return "<a b=\"&" + M + ";\"/>"; },
       Refusal::malformed_xml},
      {"lt_in_attribute", [] { return "<a b=\"<" + M + "\"/>"; }, Refusal::malformed_xml},
      {"two_roots", [] { return "<a/><b>" + M + "</b>"; }, Refusal::malformed_xml},
      {"text_after_root", [] { return "<a/>" + M; }, Refusal::malformed_xml},
      {"text_before_root", [] { return M + "<a/>"; }, Refusal::malformed_xml},
      {"cdata_outside_root", [] { return "<![CDATA[" + M + "]]><a/>"; }, Refusal::malformed_xml},
      {"unterminated_comment", [] { return "<a><!-- " + M; }, Refusal::malformed_xml},
      {"unterminated_attribute", [] { return "<a b=\"" + M; }, Refusal::malformed_xml},
      {"space_after_lt", [] { return "< a>" + M + "</a>"; }, Refusal::malformed_xml},
      {"duplicate_attribute", [] { return "<a x=\"1\" x=\"" + M + "\"/>"; },
       Refusal::malformed_xml},
      {"element_name_in_error", [] { return "<" + M + "><b></" + M + ">"; },
       Refusal::malformed_xml},
      {"end_tag_without_start", [] { return "</" + M + "><a/>"; }, Refusal::malformed_xml},

      // --- too_deep / too_many_elements, from the pre-scan.
      {"nested_100k", [] { return nested(100000, M); }, Refusal::too_deep},
      {"nested_100k_unclosed", [] { return repeat("<a>", 100000) + M; }, Refusal::too_deep},
      {"nested_33", [] { return nested(33, M); }, Refusal::too_deep},
      {"self_closing_at_33", [] { return nested(32, "<" + M + "/>"); }, Refusal::too_deep},
      {"depth_ignores_quoted_gt_and_slash",
       [] { return "<r>" + repeat("<a q='/>' z=\"/>\">", 32) + M; }, Refusal::too_deep},
      {"too_deep_wins_over_control_character", [] { return "<r>\x01" + nested(40, M) + "</r>"; },
       Refusal::too_deep},
      {"siblings_200k", [] { return "<r>" + repeat("<a/>", 200000) + M + "</r>"; },
       Refusal::too_many_elements},
      {"siblings_10001", [] { return "<r>" + repeat("<a/>", 10000) + M + "</r>"; },
       Refusal::too_many_elements},
      {"attribute_bomb_100k_on_one_element",
       [] {
         std::string body = "<a";
         for (int i = 0; i < 100000; ++i) body += " b" + std::to_string(i) + "=''";
         return body + " m=\"" + M + "\"/>";
       },
       Refusal::too_many_elements},
      {"attributes_65", [] { return "<a" + attributes(65) + ">" + M + "</a>"; },
       Refusal::too_many_elements},
      {"too_many_wins_over_bare_ampersand",
       [] { return "<r>&" + repeat("<a/>", 20000) + M + "</r>"; }, Refusal::too_many_elements},
      {"markup_in_comments_is_not_counted",
       [] {
         return "<r><!--" + repeat("<a>", 1000) + "--><![CDATA[" + repeat("<a>", 1000) + "]]>" + M +
                "</r>";
       },
       Refusal::not_soap},

      // --- not_soap: well-formed, but not a SOAP 1.1 SendNotification.
      {"html_page",
       [] {
         return "<html><head><title>" + M + "</title></head><body><p>" + M + "</p></body></html>";
       },
       Refusal::not_soap},
      {"soap12_envelope",
       [] {
         std::string body = with_events("");
         const std::string soap11 = kSoap11Ns;
         body.replace(body.find(soap11), soap11.size(), "http://www.w3.org/2003/05/soap-envelope");
         return body + "<!--" + M + "-->";
       },
       Refusal::not_soap},
      {"envelope_without_namespace",
       [] { return "<Envelope><Body><" + M + "/></Body></Envelope>"; }, Refusal::not_soap},
      {"undeclared_envelope_prefix",
       [] { return "<soap:Envelope><soap:Body>" + M + "</soap:Body></soap:Envelope>"; },
       Refusal::not_soap},
      {"no_body",
       [] {
         return "<s:Envelope xmlns:s=\"" + std::string(kSoap11Ns) + "\"><s:Header><" + M +
                "/></s:Header></s:Envelope>";
       },
       Refusal::not_soap},
      {"fault_in_body", [] { return build_fault("soap:Server", M); }, Refusal::not_soap},
      {"body_without_send_notification",
       [] {
         return "<s:Envelope xmlns:s=\"" + std::string(kSoap11Ns) + "\"><s:Body><m:" + M +
                " xmlns:m=\"" + kMessagesNs + "\"/></s:Body></s:Envelope>";
       },
       Refusal::not_soap},
      {"send_notification_in_types_namespace",
       [] {
         return "<s:Envelope xmlns:s=\"" + std::string(kSoap11Ns) +
                "\"><s:Body><t:SendNotification xmlns:t=\"" + kTypesNs + "\"><t:" + M +
                "/></t:SendNotification></s:Body></s:Envelope>";
       },
       Refusal::not_soap},
      {"reply_instead_of_callback",
       [] { return read_data_file("09-exchangelib-reply-ok.xml") + "<!--" + M + "-->"; },
       Refusal::not_soap},
      {"no_response_messages",
       [] {
         std::string body = with_messages("");
         body.replace(body.find("<m:ResponseMessages>"), 20, "<m:" + M + ">");
         body.replace(body.find("</m:ResponseMessages>"), 21, "</m:" + M + ">");
         return body;
       },
       Refusal::not_soap},
      {"empty_response_messages", message("<m:" + M + "/>"), Refusal::not_soap},
      {"missing_response_class",
       message("<m:SendNotificationResponseMessage><m:ResponseCode>" + M +
               "</m:ResponseCode></m:SendNotificationResponseMessage>"),
       Refusal::not_soap},
      {"unknown_response_class",
       message("<m:SendNotificationResponseMessage ResponseClass=\"" + M +
               "\"></m:SendNotificationResponseMessage>"),
       Refusal::not_soap},
      {"notification_without_subscription_id",
       message("<m:SendNotificationResponseMessage ResponseClass=\"Success\"><m:Notification>"
               "<t:StatusEvent><t:Watermark>" +
               M +
               "</t:Watermark></t:StatusEvent></m:Notification>"
               "</m:SendNotificationResponseMessage>"),
       Refusal::not_soap},
      {"empty_subscription_id",
       message("<m:SendNotificationResponseMessage ResponseClass=\"Success\"><m:Notification>"
               "<t:SubscriptionId/><t:PreviousWatermark>" +
               M + "</t:PreviousWatermark></m:Notification></m:SendNotificationResponseMessage>"),
       Refusal::not_soap},
      {"duplicate_subscription_id",
       [] {
         return with_notification("<t:SubscriptionId>A</t:SubscriptionId><t:SubscriptionId>" + M +
                                  "</t:SubscriptionId>");
       },
       Refusal::not_soap},
      {"duplicate_notification",
       message("<m:SendNotificationResponseMessage ResponseClass=\"Success\"><m:Notification>"
               "<t:SubscriptionId>A</t:SubscriptionId></m:Notification><m:Notification>"
               "<t:SubscriptionId>" +
               M + "</t:SubscriptionId></m:Notification></m:SendNotificationResponseMessage>"),
       Refusal::not_soap},
      {"event_without_watermark",
       soap("<t:NewMailEvent><t:TimeStamp>" + M + "</t:TimeStamp></t:NewMailEvent>"),
       Refusal::not_soap},
      {"status_event_with_empty_watermark",
       soap("<t:StatusEvent><t:Watermark></t:Watermark><t:" + M + "/></t:StatusEvent>"),
       Refusal::not_soap},
      {"duplicate_watermark",
       soap("<t:StatusEvent><t:Watermark>A</t:Watermark><t:Watermark>" + M +
            "</t:Watermark></t:StatusEvent>"),
       Refusal::not_soap},
      {"item_id_without_id",
       soap("<t:NewMailEvent><t:Watermark>W</t:Watermark><t:ItemId ChangeKey=\"" + M +
            "\"/></t:NewMailEvent>"),
       Refusal::not_soap},
      {"unread_count_negative",
       soap("<t:ModifiedEvent><t:Watermark>" + M +
            "</t:Watermark><t:UnreadCount>-1</t:UnreadCount></t:ModifiedEvent>"),
       Refusal::not_soap},
      {"unread_count_text",
       soap("<t:ModifiedEvent><t:Watermark>W</t:Watermark><t:UnreadCount>" + M +
            "</t:UnreadCount></t:ModifiedEvent>"),
       Refusal::not_soap},
      {"unread_count_overflow",
       soap("<t:ModifiedEvent><t:Watermark>" + M +
            "</t:Watermark><t:UnreadCount>99999999999999999999</t:UnreadCount></t:ModifiedEvent>"),
       Refusal::not_soap},
      {"unread_count_empty",
       soap("<t:ModifiedEvent><t:Watermark>" + M +
            "</t:Watermark><t:UnreadCount/></t:ModifiedEvent>"),
       Refusal::not_soap},
      {"unread_count_fraction",
       soap("<t:ModifiedEvent><t:Watermark>" + M +
            "</t:Watermark><t:UnreadCount>1.5</t:UnreadCount></t:ModifiedEvent>"),
       Refusal::not_soap},
      {"more_events_yes",
       [] {
         std::string body = with_events("<!--" + M + "-->");
         body.replace(body.find(">false<"), 7, ">yes<");
         return body;
       },
       Refusal::not_soap},
      {"more_events_marker",
       [] {
         std::string body = with_events("");
         body.replace(body.find(">false<"), 7, ">" + M + "<");
         return body;
       },
       Refusal::not_soap},
  };
}

void PrintTo(const HostileCase& c, std::ostream* os) {
  *os << c.name;
}

class HostileInput : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileInput, IsRefusedWithoutQuotingTheBody) {
  const HostileCase& c = GetParam();
  const std::string body = c.body();
  auto refused = refusal_of(body, c.limits);
  ASSERT_TRUE(refused) << "accepted";
  EXPECT_EQ(refusal_name(refused->refusal), std::string(refusal_name(c.refusal)))
      << refused->message;
  EXPECT_FALSE(refused->message.empty());
  EXPECT_EQ(refused->message.find(kMarker), std::string::npos) << refused->message;
  // A message is one printable line: no body bytes smuggled in.
  for (char ch : refused->message) {
    EXPECT_TRUE(ch >= 0x20 && ch < 0x7F) << "non-printable byte in: " << refused->message;
  }
}

INSTANTIATE_TEST_SUITE_P(Ews, HostileInput, ::testing::ValuesIn(hostile_cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           return info.param.name;
                         });

TEST(HostileInputTable, CoversEveryRefusal) {
  std::set<Refusal> seen;
  for (const auto& c : hostile_cases()) seen.insert(c.refusal);
  EXPECT_EQ(seen.size(), 7u);
}

TEST(HostileInputLimits, ExactlyAtTheLimitIsAllowed) {
  // 32 levels pass the pre-scan (and then fail the SOAP checks); 33 do not.
  auto at_limit = refusal_of(nested(32));
  ASSERT_TRUE(at_limit);
  EXPECT_EQ(at_limit->refusal, Refusal::not_soap);
  auto siblings = refusal_of("<r>" + repeat("<a/>", 9999) + "</r>");
  ASSERT_TRUE(siblings);
  EXPECT_EQ(siblings->refusal, Refusal::not_soap);
  auto attributes_at_limit = refusal_of("<a" + attributes(64) + "/>");
  ASSERT_TRUE(attributes_at_limit);
  EXPECT_EQ(attributes_at_limit->refusal, Refusal::not_soap);
  const std::string body = status_body();
  must_parse(body, ParseLimits{.max_bytes = body.size()});
}

TEST(HostileInputLimits, RefusesTheAttributeBombQuickly) {
  // tinyxml2's duplicate check is quadratic: unguarded, this body costs over a minute of CPU.
  std::string bomb = "<a";
  for (int i = 0; i < 100000; ++i) bomb += " b" + std::to_string(i) + "=''";
  bomb += "/>";
  const auto start = std::chrono::steady_clock::now();
  auto refused = refusal_of(bomb);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->refusal, Refusal::too_many_elements);
  EXPECT_LT(took, std::chrono::milliseconds(50));
}

TEST(HostileInputLimits, RefusesBigBodiesQuickly) {
  // The nesting bomb is refused by the pre-scan after 33 elements, not after parsing 100k.
  // The bound is loose (a call takes well under 1 ms in the dev build, 7 ms under ASan on a busy
  // machine), as for the attribute bomb: parsing the whole body would take far longer.
  const std::string bomb = nested(100000);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(refusal_of(bomb));
  const auto per_call = (std::chrono::steady_clock::now() - start) / 100;
  EXPECT_LT(per_call, std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace mp::ews::test
