// The EWS callbacks the load tools post (fanout_load, soak_load): SendNotification bodies shaped
// like Exchange Online's, for the registrations of the layout in fanout_common.hpp.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "fanout_common.hpp"

namespace fanout {

inline constexpr char kSoapAction[] =
    "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification";
inline constexpr char kTypes[] = "http://schemas.microsoft.com/exchange/services/2006/types";
inline constexpr char kMessages[] = "http://schemas.microsoft.com/exchange/services/2006/messages";
// Ids shaped like Exchange Online's (base64 of the usual lengths); the folders are the same
// for every mailbox, which mailpushd does not look at.
inline constexpr char kItemId[] =
    "AAMkADk0ZTk4ZmQ3LWFhNmEtNDBlNi1hMmY2LTc4ZjQ3OGMxOTg0MwBGAAAAAAAOFnqiRe3ARZ3Lh8tPgjchBwBkHkP2"
    "vGfBS7HJnL0RmrAGAAAAAAEMAABkHkP2vGfBS7HJnL0RmrAGAAH8k3m9AAA=";
inline constexpr char kInbox[] =
    "AAMkADk0ZTk4ZmQ3LWFhNmEtNDBlNi1hMmY2LTc4ZjQ3OGMxOTg0MwAuAAAAAAAOFnqiRe3ARZ3Lh8tPgjchAQBkHkP2"
    "vGfBS7HJnL0RmrAGAAAAAAEMAAA=";
inline constexpr char kRoot[] =
    "AAMkADk0ZTk4ZmQ3LWFhNmEtNDBlNi1hMmY2LTc4ZjQ3OGMxOTg0MwAuAAAAAAAOFnqiRe3ARZ3Lh8tPgjchAQBkHkP2"
    "vGfBS7HJnL0RmrAGAAAAAAEIAAA=";

inline std::string watermark(std::uint64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "AQAAAEZhbm91dEJlbmNo%020llu", static_cast<unsigned long long>(n));
  return buf;
}

inline std::string envelope(const std::string& subscription, std::uint64_t n,
                            const std::string& events) {
  std::string s;
  s.reserve(1200 + events.size());
  s +=
      R"(<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">)";
  s += R"(<soap11:Header><t:RequestServerVersion xmlns:m=")";
  s += kMessages;
  s += R"(" Version="Exchange2010" xmlns:t=")";
  s += kTypes;
  s += R"(" /></soap11:Header><soap11:Body><m:SendNotification xmlns:t=")";
  s += kTypes;
  s += R"(" xmlns:m=")";
  s += kMessages;
  s += R"("><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success">)";
  s += "<m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>";
  s += subscription;
  s += "</t:SubscriptionId><t:PreviousWatermark>";
  s += watermark(2 * n);
  s += "</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>";
  s += events;
  s += "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages>"
       "</m:SendNotification></soap11:Body></soap11:Envelope>";
  return s;
}

// A message marked read: the item's ModifiedEvent and the inbox's, with its new UnreadCount.
inline std::string unread_events(std::uint64_t n, std::int64_t badge) {
  std::string e;
  e.reserve(900);
  e += "<t:ModifiedEvent><t:Watermark>" + watermark(2 * n + 1) +
       "</t:Watermark><t:TimeStamp>2026-11-24T10:00:00Z</t:TimeStamp><t:ItemId Id=\"";
  e += kItemId;
  e += "\" ChangeKey=\"CQAAABYAAAA=\" /><t:ParentFolderId Id=\"";
  e += kInbox;
  e += "\" ChangeKey=\"AQAAAA==\" /></t:ModifiedEvent>";
  e += "<t:ModifiedEvent><t:Watermark>" + watermark(2 * n + 2) +
       "</t:Watermark><t:TimeStamp>2026-11-24T10:00:00Z</t:TimeStamp><t:FolderId Id=\"";
  e += kInbox;
  e += "\" ChangeKey=\"AgAAAA==\" /><t:ParentFolderId Id=\"";
  e += kRoot;
  e += "\" ChangeKey=\"AQAAAA==\" /><t:UnreadCount>" + std::to_string(badge) +
       "</t:UnreadCount></t:ModifiedEvent>";
  return e;
}

inline std::string status_events(std::uint64_t n) {
  return "<t:StatusEvent><t:Watermark>" + watermark(2 * n + 1) + "</t:Watermark></t:StatusEvent>";
}

// The POST of a callback to the listener URL whose last segment is the callback secret.
inline std::string make_request(const std::string& callback_secret, const std::string& body) {
  std::string r;
  r.reserve(body.size() + 300);
  r += "POST /ews/v1/notify/";
  r += callback_secret;
  r += " HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"";
  r += kSoapAction;
  r += "\"\r\nContent-Length: ";
  r += std::to_string(body.size());
  r += "\r\n\r\n";
  r += body;
  return r;
}

}  // namespace fanout
