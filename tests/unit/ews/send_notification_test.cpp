// Tests of parse_send_notification on hand-made bodies written from the EWS schema (event kinds
// with no public sample, namespace variations), and of build_reply / build_fault.
#include "ews/send_notification.hpp"

#include <gtest/gtest.h>
#include <tinyxml2.h>

#include <string>

#include "test_ews.hpp"

namespace mp::ews::test {
namespace {

// By value, so that `const Notification& n = only_notification(must_parse(...))` is safe.
Notification only_notification(const SendNotification& parsed) {
  if (parsed.messages.size() != 1 || !parsed.messages[0].notification) {
    ADD_FAILURE() << "expected one message with a Notification";
    return {};
  }
  return *parsed.messages[0].notification;
}

TEST(ParseSendNotification, DefaultNamespacesInsteadOfPrefixes) {
  const std::string body =
      R"(<Envelope xmlns=")" EWS_SOAP11 R"("><Header><RequestServerVersion xmlns=")" EWS_TYP
      R"(" Version="Exchange2010_SP2"/></Header><Body><SendNotification xmlns=")" EWS_MSG
      R"("><ResponseMessages><SendNotificationResponseMessage ResponseClass="Success"><ResponseCode>NoError</ResponseCode><Notification><SubscriptionId xmlns=")" EWS_TYP
      R"(">SUB</SubscriptionId><PreviousWatermark xmlns=")" EWS_TYP
      R"(">PW</PreviousWatermark><MoreEvents xmlns=")" EWS_TYP
      R"(">false</MoreEvents><NewMailEvent xmlns=")" EWS_TYP
      R"("><Watermark>W1</Watermark><TimeStamp>2024-01-02T03:04:05Z</TimeStamp><ItemId Id="I1" ChangeKey="CK"/><ParentFolderId Id="P1"/></NewMailEvent></Notification></SendNotificationResponseMessage></ResponseMessages></SendNotification></Body></Envelope>)";
  const SendNotification parsed = must_parse(body);
  EXPECT_EQ(parsed.server_version, "Exchange2010_SP2");
  const Notification& n = only_notification(parsed);
  EXPECT_EQ(n.subscription_id, "SUB");
  EXPECT_EQ(n.previous_watermark, "PW");
  ASSERT_EQ(n.events.size(), 1u);
  EXPECT_EQ(n.events[0].type, EventType::new_mail);
  EXPECT_EQ(n.events[0].watermark, "W1");
  EXPECT_EQ(n.events[0].timestamp, "2024-01-02T03:04:05Z");
  EXPECT_EQ(n.events[0].item_id, "I1");
  EXPECT_EQ(n.events[0].parent_folder_id, "P1");
  EXPECT_FALSE(n.events[0].folder_id);
}

TEST(ParseSendNotification, UnusualAndSwappedPrefixes) {
  // 's:' for the envelope, 'a:' for types, and 't:' bound to *messages*: only URIs count.
  const std::string body =
      R"(<s:Envelope xmlns:s=")" EWS_SOAP11 R"("><s:Body><t:SendNotification xmlns:t=")" EWS_MSG
      R"(" xmlns:a=")" EWS_TYP
      R"("><t:ResponseMessages><t:SendNotificationResponseMessage ResponseClass="Success"><t:ResponseCode>NoError</t:ResponseCode><t:Notification><a:SubscriptionId>SUB</a:SubscriptionId><a:PreviousWatermark>PW</a:PreviousWatermark><a:MoreEvents>false</a:MoreEvents><a:StatusEvent><a:Watermark>W</a:Watermark></a:StatusEvent></t:Notification></t:SendNotificationResponseMessage></t:ResponseMessages></t:SendNotification></s:Body></s:Envelope>)";
  const SendNotification parsed = must_parse(body);
  EXPECT_EQ(parsed.server_version, "");
  const Notification& n = only_notification(parsed);
  EXPECT_EQ(n.subscription_id, "SUB");
  ASSERT_EQ(n.events.size(), 1u);
  EXPECT_EQ(n.events[0].type, EventType::status);
  EXPECT_EQ(n.events[0].watermark, "W");
  EXPECT_FALSE(n.events[0].timestamp);
}

TEST(ParseSendNotification, RightLocalNameInWrongNamespaceIsIgnored) {
  const std::string body = with_notification(
      R"(<x:SubscriptionId xmlns:x="urn:decoy">DECOY</x:SubscriptionId><t:SubscriptionId>SUB</t:SubscriptionId>)"
      R"(<t:StatusEvent><t:Watermark xmlns:t="urn:decoy">DECOY</t:Watermark><t:Watermark>W</t:Watermark></t:StatusEvent>)");
  const Notification& n = only_notification(must_parse(body));
  EXPECT_EQ(n.subscription_id, "SUB");
  ASSERT_EQ(n.events.size(), 2u);  // the decoy SubscriptionId is an unknown event element
  EXPECT_EQ(n.events[0].type, EventType::unknown);
  EXPECT_EQ(n.unknown_events, 1u);
  EXPECT_EQ(n.events[1].watermark, "W");
}

TEST(ParseSendNotification, PrefixRedeclaredOnAnInnerElement) {
  // m: is rebound to the types URI on the Notification's children only.
  const std::string body =
      with_notification(R"(<m:SubscriptionId xmlns:m=")" EWS_TYP
                        R"(">SUB</m:SubscriptionId><m:StatusEvent xmlns:m=")" EWS_TYP
                        R"("><m:Watermark>W</m:Watermark></m:StatusEvent>)");
  const Notification& n = only_notification(must_parse(body));
  EXPECT_EQ(n.subscription_id, "SUB");
  ASSERT_EQ(n.events.size(), 1u);
  EXPECT_EQ(n.events[0].type, EventType::status);
}

TEST(ParseSendNotification, EmptyDefaultNamespaceUndeclares) {
  const std::string body = R"(<Envelope xmlns=")" EWS_SOAP11 R"("><Body xmlns=""/></Envelope>)";
  auto refused = refusal_of(body);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->refusal, Refusal::not_soap);
}

TEST(ParseSendNotification, ModifiedEventWithUnreadCount) {
  const Notification& n = only_notification(must_parse(with_events(
      R"(<t:ModifiedEvent><t:Watermark>W</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:FolderId Id="F" ChangeKey="AgAAAA=="/><t:ParentFolderId Id="P"/><t:UnreadCount> 42 </t:UnreadCount></t:ModifiedEvent>)")));
  ASSERT_EQ(n.events.size(), 1u);
  EXPECT_EQ(n.events[0].type, EventType::modified);
  EXPECT_EQ(n.events[0].folder_id, "F");
  EXPECT_EQ(n.events[0].parent_folder_id, "P");
  EXPECT_EQ(n.events[0].unread_count, 42);
  EXPECT_FALSE(n.events[0].item_id);
}

TEST(ParseSendNotification, UnreadCountZeroAndLarge) {
  const Notification& n = only_notification(must_parse(with_events(
      R"(<t:ModifiedEvent><t:Watermark>W</t:Watermark><t:UnreadCount>0</t:UnreadCount></t:ModifiedEvent>)"
      R"(<t:ModifiedEvent><t:Watermark>W</t:Watermark><t:UnreadCount>+2147483647</t:UnreadCount></t:ModifiedEvent>)")));
  ASSERT_EQ(n.events.size(), 2u);
  EXPECT_EQ(n.events[0].unread_count, 0);
  EXPECT_EQ(n.events[1].unread_count, 2147483647);
}

TEST(ParseSendNotification, MovedAndCopiedCarryOldIds) {
  const Notification& n = only_notification(must_parse(with_events(
      R"(<t:MovedEvent><t:Watermark>W1</t:Watermark><t:TimeStamp>T1</t:TimeStamp><t:ItemId Id="I-new"/><t:ParentFolderId Id="P-new"/><t:OldItemId Id="I-old"/><t:OldParentFolderId Id="P-old"/></t:MovedEvent>)"
      R"(<t:CopiedEvent><t:Watermark>W2</t:Watermark><t:TimeStamp>T2</t:TimeStamp><t:FolderId Id="F-copy"/><t:ParentFolderId Id="P2"/><t:OldFolderId Id="F-orig"/><t:OldParentFolderId Id="P1"/></t:CopiedEvent>)")));
  ASSERT_EQ(n.events.size(), 2u);
  const Event& moved = n.events[0];
  EXPECT_EQ(moved.type, EventType::moved);
  EXPECT_STREQ(event_type_name(moved.type), "Moved");
  EXPECT_EQ(moved.item_id, "I-new");
  EXPECT_EQ(moved.parent_folder_id, "P-new");
  EXPECT_EQ(moved.old_item_id, "I-old");
  EXPECT_EQ(moved.old_parent_folder_id, "P-old");
  EXPECT_FALSE(moved.old_folder_id);
  const Event& copied = n.events[1];
  EXPECT_EQ(copied.type, EventType::copied);
  EXPECT_EQ(copied.folder_id, "F-copy");
  EXPECT_EQ(copied.old_folder_id, "F-orig");
  EXPECT_EQ(copied.old_parent_folder_id, "P1");
  EXPECT_FALSE(copied.old_item_id);
}

TEST(ParseSendNotification, EveryKnownEventKind) {
  const Notification& n = only_notification(must_parse(with_events(
      R"(<t:StatusEvent><t:Watermark>W0</t:Watermark></t:StatusEvent>)"
      R"(<t:NewMailEvent><t:Watermark>W1</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/></t:NewMailEvent>)"
      R"(<t:CreatedEvent><t:Watermark>W2</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/></t:CreatedEvent>)"
      R"(<t:DeletedEvent><t:Watermark>W3</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/></t:DeletedEvent>)"
      R"(<t:ModifiedEvent><t:Watermark>W4</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/></t:ModifiedEvent>)"
      R"(<t:MovedEvent><t:Watermark>W5</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/><t:OldItemId Id="O"/><t:OldParentFolderId Id="OP"/></t:MovedEvent>)"
      R"(<t:CopiedEvent><t:Watermark>W6</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/><t:OldItemId Id="O"/><t:OldParentFolderId Id="OP"/></t:CopiedEvent>)"
      R"(<t:FreeBusyChangedEvent><t:Watermark>W7</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/></t:FreeBusyChangedEvent>)")));
  const std::vector<std::pair<EventType, std::string>> want{
      {EventType::status, "Status"},     {EventType::new_mail, "NewMail"},
      {EventType::created, "Created"},   {EventType::deleted, "Deleted"},
      {EventType::modified, "Modified"}, {EventType::moved, "Moved"},
      {EventType::copied, "Copied"},     {EventType::free_busy_changed, "FreeBusyChanged"},
  };
  ASSERT_EQ(n.events.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(n.events[i].type, want[i].first);
    EXPECT_EQ(event_type_name(n.events[i].type), want[i].second);
    EXPECT_EQ(n.events[i].element, want[i].second + "Event");
    EXPECT_EQ(n.events[i].watermark, "W" + std::to_string(i));
  }
  EXPECT_EQ(n.unknown_events, 0u);
  EXPECT_STREQ(event_type_name(EventType::unknown), "Unknown");
}

TEST(ParseSendNotification, UnknownEventIsKeptAndCounted) {
  const Notification& n = only_notification(must_parse(with_events(
      R"(<t:FutureEvent><t:Watermark>WF</t:Watermark><t:UnreadCount>not a number</t:UnreadCount><t:ItemId/></t:FutureEvent>)"
      R"(<x:Telemetry xmlns:x="urn:vendor"><x:Anything/></x:Telemetry>)"
      R"(<t:NewMailEvent><t:Watermark>W</t:Watermark><t:TimeStamp>T</t:TimeStamp><t:ItemId Id="I"/><t:ParentFolderId Id="P"/></t:NewMailEvent>)")));
  ASSERT_EQ(n.events.size(), 3u);
  EXPECT_EQ(n.unknown_events, 2u);
  EXPECT_EQ(n.events[0].type, EventType::unknown);
  EXPECT_EQ(n.events[0].element, "FutureEvent");
  EXPECT_EQ(n.events[0].watermark, "WF");
  EXPECT_FALSE(n.events[0].item_id);
  EXPECT_EQ(n.events[1].element, "Telemetry");
  EXPECT_EQ(n.events[1].watermark, "");
  EXPECT_EQ(n.events[2].type, EventType::new_mail);
}

TEST(ParseSendNotification, SeveralResponseMessages) {
  const std::string body = with_messages(
      R"(<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>A</t:SubscriptionId><t:PreviousWatermark>PA</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents><t:StatusEvent><t:Watermark>WA</t:Watermark></t:StatusEvent></m:Notification></m:SendNotificationResponseMessage>)"
      R"(<m:SendNotificationResponseMessage ResponseClass="Error"><m:MessageText>gone</m:MessageText><m:ResponseCode>ErrorSubscriptionNotFound</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:MessageXml><t:Value Name="SubscriptionId">B</t:Value><t:Value Name="Other">x &amp; y</t:Value></m:MessageXml></m:SendNotificationResponseMessage>)"
      R"(<m:SendNotificationResponseMessage ResponseClass="Warning"><m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>C</t:SubscriptionId></m:Notification></m:SendNotificationResponseMessage>)");
  const SendNotification parsed = must_parse(body);
  ASSERT_EQ(parsed.messages.size(), 3u);
  EXPECT_EQ(parsed.messages[0].subscription_id(), "A");
  EXPECT_EQ(parsed.messages[0].response_class, "Success");
  EXPECT_EQ(parsed.messages[1].response_class, "Error");
  EXPECT_EQ(parsed.messages[1].response_code, "ErrorSubscriptionNotFound");
  EXPECT_EQ(parsed.messages[1].message_text, "gone");
  EXPECT_FALSE(parsed.messages[1].notification);
  EXPECT_EQ(parsed.messages[1].subscription_id(), "B");
  EXPECT_EQ(parsed.messages[1].message_xml_values.at("Other"), "x & y");
  EXPECT_EQ(parsed.messages[2].response_class, "Warning");
  ASSERT_TRUE(parsed.messages[2].notification);
  EXPECT_EQ(parsed.messages[2].notification->previous_watermark, "");
  EXPECT_FALSE(parsed.messages[2].notification->more_events);
  EXPECT_TRUE(parsed.messages[2].notification->events.empty());
}

TEST(ParseSendNotification, ErrorMessageWithoutAnySubscriptionId) {
  const SendNotification parsed = must_parse(with_messages(
      R"(<m:SendNotificationResponseMessage ResponseClass="Error"><m:ResponseCode>ErrorInternalServerError</m:ResponseCode></m:SendNotificationResponseMessage>)"));
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_FALSE(parsed.messages[0].subscription_id());
  EXPECT_FALSE(parsed.messages[0].message_text);
}

TEST(ParseSendNotification, MoreEventsTrueAndXsBooleanForms) {
  EXPECT_TRUE(only_notification(must_parse(with_events("", "true"))).more_events);
  EXPECT_TRUE(only_notification(must_parse(with_events("", "1"))).more_events);
  EXPECT_TRUE(only_notification(must_parse(with_events("", "\n  true  \n"))).more_events);
  EXPECT_FALSE(only_notification(must_parse(with_events("", "0"))).more_events);
}

TEST(ParseSendNotification, CrlfLineEndingsAndBom) {
  std::string crlf;
  for (char c : read_data_file("05-exchangelib-test-status-s-prefix.xml")) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  ASSERT_NE(crlf.find("\r\n"), std::string::npos);
  const Notification& a = only_notification(must_parse(crlf));
  EXPECT_EQ(a.subscription_id, "XXXXX=");
  ASSERT_EQ(a.events.size(), 1u);
  EXPECT_EQ(a.events[0].watermark, "BBBBB=");

  const std::string bom =
      "\xEF\xBB\xBF" + read_data_file("01-rooms-doc-exo-two-modified-repaired.xml");
  const SendNotification parsed = must_parse(bom);
  EXPECT_EQ(parsed.server_version, "Exchange2010");
  EXPECT_EQ(only_notification(parsed).events.size(), 2u);

  // BOM and CRLF together, no XML declaration.
  const std::string both = "\xEF\xBB\xBF" + crlf.substr(crlf.find("<s:Envelope"));
  EXPECT_EQ(only_notification(must_parse(both)).subscription_id, "XXXXX=");
}

TEST(ParseSendNotification, TextKeepsEntitiesCdataAndCommentsApart) {
  const Notification& n = only_notification(must_parse(with_notification(
      R"(<t:SubscriptionId>A&amp;B&#x41;<!-- note --><![CDATA[<C>]]></t:SubscriptionId>)"
      R"(<t:StatusEvent><!-- c --><t:Watermark>W&lt;&gt;&quot;&apos;</t:Watermark></t:StatusEvent>)")));
  EXPECT_EQ(n.subscription_id, "A&BA<C>");
  ASSERT_EQ(n.events.size(), 1u);
  EXPECT_EQ(n.events[0].watermark, "W<>\"'");
}

TEST(ParseSendNotification, ElementsInAnyOrderAndUnknownsIgnored) {
  const std::string body =
      R"(<s:Envelope xmlns:s=")" EWS_SOAP11 R"("><s:Body><m:SendNotification xmlns:m=")" EWS_MSG
      R"(" xmlns:t=")" EWS_TYP
      R"("><m:Extra/><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass=" Success "><m:Notification><t:StatusEvent><t:Watermark>W</t:Watermark><t:Unknown/></t:StatusEvent><t:MoreEvents>false</t:MoreEvents><t:SubscriptionId>S</t:SubscriptionId></m:Notification><m:ResponseCode>NoError</m:ResponseCode><m:Other>x</m:Other></m:SendNotificationResponseMessage><m:SomethingElse/></m:ResponseMessages></m:SendNotification></s:Body><s:Header><t:RequestServerVersion xmlns:t=")" EWS_TYP
      R"(" Version="V"/></s:Header></s:Envelope>)";
  const SendNotification parsed = must_parse(body);
  EXPECT_EQ(parsed.server_version, "V");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].response_class, "Success");
  EXPECT_EQ(parsed.messages[0].response_code, "NoError");
  EXPECT_EQ(only_notification(parsed).subscription_id, "S");
}

TEST(ParseSendNotification, CustomLimits) {
  const std::string body = read_data_file("05-exchangelib-test-status-s-prefix.xml");
  must_parse(body, ParseLimits{.max_bytes = body.size(), .max_depth = 8, .max_elements = 14});
  auto refused = refusal_of(body, ParseLimits{.max_bytes = body.size() - 1});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->refusal, Refusal::too_large);
  refused = refusal_of(body, ParseLimits{.max_depth = 7});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->refusal, Refusal::too_deep);
  refused = refusal_of(body, ParseLimits{.max_elements = 13});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->refusal, Refusal::too_many_elements);
}

TEST(ParseSendNotification, DepthLimitAboveTinyxml2sOwnStillRefusesAsTooDeep) {
  std::string body;
  for (int i = 0; i < 150; ++i) body += "<a>";
  for (int i = 0; i < 150; ++i) body += "</a>";
  auto refused = refusal_of(body, ParseLimits{.max_depth = 1000});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->refusal, Refusal::too_deep) << refused->message;
}

TEST(RefusalName, NamesEveryKind) {
  EXPECT_STREQ(refusal_name(Refusal::too_large), "too_large");
  EXPECT_STREQ(refusal_name(Refusal::doctype), "doctype");
  EXPECT_STREQ(refusal_name(Refusal::invalid_utf8), "invalid_utf8");
  EXPECT_STREQ(refusal_name(Refusal::too_deep), "too_deep");
  EXPECT_STREQ(refusal_name(Refusal::too_many_elements), "too_many_elements");
  EXPECT_STREQ(refusal_name(Refusal::malformed_xml), "malformed_xml");
  EXPECT_STREQ(refusal_name(Refusal::not_soap), "not_soap");
}

TEST(BuildReply, ExactShape) {
  EXPECT_EQ(
      build_reply(SubscriptionStatus::ok),
      R"(<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap=")" EWS_SOAP11
      R"(" xmlns:m=")" EWS_MSG
      R"("><soap:Body><m:SendNotificationResult><m:SubscriptionStatus>OK</m:SubscriptionStatus></m:SendNotificationResult></soap:Body></soap:Envelope>)");
  EXPECT_EQ(
      build_reply(SubscriptionStatus::unsubscribe),
      R"(<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap=")" EWS_SOAP11
      R"(" xmlns:m=")" EWS_MSG
      R"("><soap:Body><m:SendNotificationResult><m:SubscriptionStatus>Unsubscribe</m:SubscriptionStatus></m:SendNotificationResult></soap:Body></soap:Envelope>)");
}

TEST(BuildReply, ReadsLikeTheReferenceReplies) {
  EXPECT_EQ(reply_subscription_status(build_reply(SubscriptionStatus::ok)), "OK");
  EXPECT_EQ(reply_subscription_status(build_reply(SubscriptionStatus::unsubscribe)), "Unsubscribe");
  EXPECT_EQ(reply_subscription_status(read_data_file("07-aws-demo-reply-ok.xml")), "OK");
  EXPECT_EQ(reply_subscription_status(read_data_file("10-exchangelib-reply-unsubscribe.xml")),
            "Unsubscribe");
}

const tinyxml2::XMLElement* fault_child(const tinyxml2::XMLDocument& doc, const char* name) {
  const auto* envelope = doc.RootElement();
  if (envelope == nullptr || namespace_of(*envelope) != kSoap11Ns) return nullptr;
  const auto* body = child_named(*envelope, kSoap11Ns, "Body");
  const auto* fault = body ? child_named(*body, kSoap11Ns, "Fault") : nullptr;
  return fault ? fault->FirstChildElement(name) : nullptr;  // faultcode etc. are unqualified
}

TEST(BuildFault, ExactShape) {
  EXPECT_EQ(
      build_fault("soap:Client", "bad request"),
      R"(<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap=")" EWS_SOAP11
      R"("><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>bad request</faultstring></soap:Fault></soap:Body></soap:Envelope>)");
  EXPECT_EQ(build_fault("Server", "x"), build_fault("soap:Server", "x"));
}

TEST(BuildFault, EscapesTheReason) {
  const std::string reason = R"(a<b & c>"d" 'e' ]]> &amp;)";
  const std::string fault = build_fault("soap:Client", reason);
  EXPECT_NE(fault.find("<faultstring>a&lt;b &amp; c&gt;&quot;d&quot; &apos;e&apos; ]]&gt; "
                       "&amp;amp;</faultstring>"),
            std::string::npos)
      << fault;
  tinyxml2::XMLDocument doc;
  ASSERT_EQ(doc.Parse(fault.data(), fault.size()), tinyxml2::XML_SUCCESS);
  const auto* faultstring = fault_child(doc, "faultstring");
  ASSERT_NE(faultstring, nullptr);
  EXPECT_EQ(std::string(faultstring->GetText()), reason);
  const auto* faultcode = fault_child(doc, "faultcode");
  ASSERT_NE(faultcode, nullptr);
  EXPECT_STREQ(faultcode->GetText(), "soap:Client");
}

TEST(BuildFault, ReplacesWhatXmlCannotCarry) {
  constexpr char kRaw[] = "nul\0ctl\x01 bad\xC0\xAF surrogate\xED\xA0\x80 ok\xC3\xA9 cr\r";
  const std::string reason(kRaw, sizeof(kRaw) - 1);
  const std::string fault = build_fault("soap:Server", reason);
  EXPECT_EQ(fault.find('\0'), std::string::npos);
  EXPECT_EQ(fault.find('\x01'), std::string::npos);
  EXPECT_NE(fault.find("ok\xC3\xA9"), std::string::npos);
  EXPECT_NE(fault.find("cr&#13;"), std::string::npos);
  tinyxml2::XMLDocument doc;
  EXPECT_EQ(doc.Parse(fault.data(), fault.size()), tinyxml2::XML_SUCCESS);
  // Our own guard accepts it too, so the fault is strict XML 1.0 in UTF-8.
  auto refused = refusal_of(fault);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->refusal, Refusal::not_soap) << refused->message;
  EXPECT_EQ(refused->message, "the Body holds a SOAP Fault, not a SendNotification");
}

}  // namespace
}  // namespace mp::ews::test
