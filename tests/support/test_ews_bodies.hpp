// Hand-built SendNotification bodies as Exchange 2010+ sends them, for tests that post
// callbacks: a status event, new mail, and the Inbox's ModifiedEvent with its UnreadCount.
#pragma once

#include <string>

namespace mp::test {

inline const std::string kSoapAction =
    "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification";

inline std::string status_event(const std::string& wm) {
  return "<t:StatusEvent><t:Watermark>" + wm + "</t:Watermark></t:StatusEvent>";
}
inline std::string new_mail_event(const std::string& wm) {
  return "<t:NewMailEvent><t:Watermark>" + wm +
         "</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp>"
         "<t:ItemId Id=\"item-" +
         wm +
         "\" ChangeKey=\"CQ\"/><t:ParentFolderId Id=\"inbox\" ChangeKey=\"AQ\"/>"
         "</t:NewMailEvent>";
}
inline std::string unread_event(const std::string& wm, int unread) {
  return "<t:ModifiedEvent><t:Watermark>" + wm +
         "</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp>"
         "<t:FolderId Id=\"inbox\" ChangeKey=\"AQ\"/><t:ParentFolderId Id=\"root\" "
         "ChangeKey=\"AQ\"/>"
         "<t:UnreadCount>" +
         std::to_string(unread) + "</t:UnreadCount></t:ModifiedEvent>";
}

inline std::string notification(const std::string& subscription, const std::string& events) {
  return R"(<?xml version="1.0" encoding="utf-8"?>)"
         R"(<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" )"
         R"(xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" )"
         R"(xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">)"
         R"(<soap:Header><t:RequestServerVersion Version="Exchange2016"/></soap:Header><soap:Body>)"
         R"(<m:SendNotification><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success">)"
         R"(<m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>)" +
         subscription +
         "</t:SubscriptionId><t:PreviousWatermark>prev</t:PreviousWatermark>"
         "<t:MoreEvents>false</t:MoreEvents>" +
         events +
         "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></"
         "m:SendNotification>"
         "</soap:Body></soap:Envelope>";
}

}  // namespace mp::test
