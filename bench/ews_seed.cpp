// ews_seed: the data of the EWS listener benchmark (bench/ews_bench.sh).
//
//   ews_seed --registrations 100000 --sql seed.sql --bind bind.tsv --mixed mixed.tsv
//
// Writes, for N registrations of one customer (N mailboxes, N devices, N registrations, each
// with its own random callback secret stored as its SHA-384):
//   --sql    SQL for the `mariadb` client: multi-row INSERTs in batches, explicit ids
//            (customer --customer-row, mailbox = device = registration = --first-id + i), for a
//            freshly migrated, empty database;
//   --bind   one StatusEvent callback per registration, in id order, label "bind": the first
//            callback Exchange sends after subscribing, which binds the subscription id;
//   --mixed  one callback per registration in a shuffled order (fixed seed), on the bound
//            subscription, chosen by i = id - first_id:
//              i % 5 in {1,2,3}  "newmail":  CreatedEvent + NewMailEvent        (+1 unread)
//              i % 5 == 0        "status":   StatusEvent heartbeat              (no change)
//              i % 5 == 4        "modified": item ModifiedEvent + inbox ModifiedEvent with
//                                            UnreadCount = 1 + i % 97          (unread set)
//            so a recorded run can be checked: the unread counts of the newmail mailboxes add
//            up to the NewMail callbacks answered OK, and every touched modified mailbox holds
//            its UnreadCount.
// Bodies lines are `path<TAB>base64(body)<TAB>label` (the format ews_load reads). Bodies follow
// real Exchange callbacks (tests/data/ews): odd registrations in Exchange Online's compact
// `soap11:` form, even ones in on-premises Exchange 2010 SP2's indented `soap:` form.
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<unsigned char>;

Bytes random_bytes(std::size_t n) {
  Bytes b(n);
  if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
  return b;
}

std::string hex(const Bytes& b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (auto c : b) {
    s.push_back(digits[c >> 4]);
    s.push_back(digits[c & 15]);
  }
  return s;
}

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string base64(const Bytes& b) {
  return base64(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

Bytes sha384(std::string_view s) {
  Bytes out(48);
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), out.data(), &len, EVP_sha384(), nullptr) != 1 || len != 48) {
    throw std::runtime_error("SHA-384 failed");
  }
  return out;
}

// A callback secret as the registration API issues it: 43 characters of base64url (258 bits).
std::string make_secret() {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string s;
  for (auto b : random_bytes(43)) s.push_back(alphabet[b % 64]);
  return s;
}

constexpr const char* kTypes = "http://schemas.microsoft.com/exchange/services/2006/types";
constexpr const char* kMessages = "http://schemas.microsoft.com/exchange/services/2006/messages";

struct Mailbox {
  std::string subscription;  // the EWS subscription id, bound by the bind callback
  std::string inbox;         // inbox FolderId
  std::string root;          // its parent
};

// Watermarks and ids shaped like Exchange's (base64 of the same lengths).
std::string watermark() {
  return base64(random_bytes(28));
}
std::string item_id() {
  return base64(random_bytes(111));
}
std::string timestamp(std::size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "2026-11-23T%02zu:%02zu:%02zuZ", (i / 3600) % 24, (i / 60) % 60,
                i % 60);
  return buf;
}

std::string envelope(bool online, const Mailbox& m, const std::string& previous,
                     const std::string& events) {
  std::string s;
  if (online) {
    s +=
        R"(<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">)";
    s += R"(<soap11:Header><t:RequestServerVersion xmlns:m=")" + std::string(kMessages) +
         R"(" Version="Exchange2010" xmlns:t=")" + kTypes + R"(" /></soap11:Header><soap11:Body>)";
    s += R"(<m:SendNotification xmlns:t=")" + std::string(kTypes) + R"(" xmlns:m=")" + kMessages +
         R"(">)";
    s += R"(<m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success">)";
    s += "<m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>" +
         m.subscription + "</t:SubscriptionId><t:PreviousWatermark>" + previous +
         "</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>" + events;
    s += "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></"
         "m:SendNotification>"
         "</soap11:Body></soap11:Envelope>";
  } else {
    s += "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<soap:Envelope "
         "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\n"
         "<soap:Header>\n    <t:RequestServerVersion xmlns:t=\"" +
         std::string(kTypes) + "\" xmlns:m=\"" + kMessages +
         "\" Version=\"Exchange2010_SP2\"/>\n</soap:Header>\n<soap:Body>\n"
         "    <m:SendNotification xmlns:t=\"" +
         kTypes + "\" xmlns:m=\"" + kMessages +
         "\">\n"
         "    <m:ResponseMessages>\n        <m:SendNotificationResponseMessage "
         "ResponseClass=\"Success\">\n"
         "            <m:ResponseCode>NoError</m:ResponseCode>\n            <m:Notification>\n"
         "                <t:SubscriptionId>" +
         m.subscription +
         "</t:SubscriptionId>\n"
         "                <t:PreviousWatermark>" +
         previous +
         "</t:PreviousWatermark>\n"
         "                <t:MoreEvents>false</t:MoreEvents>\n" +
         events +
         "            </m:Notification>\n        </m:SendNotificationResponseMessage>\n    "
         "</m:ResponseMessages>\n"
         "</m:SendNotification>\n</soap:Body>\n</soap:Envelope>\n";
  }
  return s;
}

std::string status_event() {
  return "<t:StatusEvent><t:Watermark>" + watermark() + "</t:Watermark></t:StatusEvent>";
}

std::string item_event(const char* type, const std::string& wm, const std::string& when,
                       const std::string& item, const std::string& folder) {
  return std::string("<t:") + type + "><t:Watermark>" + wm + "</t:Watermark><t:TimeStamp>" + when +
         "</t:TimeStamp><t:ItemId Id=\"" + item +
         "\" ChangeKey=\"CQAAABYAAAA=\" /><t:ParentFolderId Id=\"" + folder +
         "\" ChangeKey=\"AQAAAA==\" /></t:" + type + ">";
}

std::string new_mail_events(const Mailbox& m, std::size_t i) {
  const std::string item = item_id();
  return item_event("CreatedEvent", watermark(), timestamp(i), item, m.inbox) +
         item_event("NewMailEvent", watermark(), timestamp(i), item, m.inbox);
}

std::string modified_events(const Mailbox& m, std::size_t i, int unread) {
  return item_event("ModifiedEvent", watermark(), timestamp(i), item_id(), m.inbox) +
         "<t:ModifiedEvent><t:Watermark>" + watermark() + "</t:Watermark><t:TimeStamp>" +
         timestamp(i) + "</t:TimeStamp><t:FolderId Id=\"" + m.inbox +
         "\" ChangeKey=\"AgAAAA==\" /><t:ParentFolderId Id=\"" + m.root +
         "\" ChangeKey=\"AQAAAA==\" /><t:UnreadCount>" + std::to_string(unread) +
         "</t:UnreadCount></t:ModifiedEvent>";
}

std::ofstream open_out(const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 100000;
  std::int64_t first_id = 1;
  std::int64_t customer_row = 1;
  std::string customer_id = "dev-bench";
  std::string sql_path, bind_path, mixed_path;
  std::size_t batch = 2000;
  CLI::App app{"ews_seed: registrations and callback bodies for the EWS listener benchmark"};
  app.add_option("--registrations", n, "registrations to make")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  app.add_option("--first-id", first_id, "id of the first mailbox/device/registration")
      ->capture_default_str();
  app.add_option("--customer-row", customer_row, "customers.id of the customer")
      ->capture_default_str();
  app.add_option("--customer-id", customer_id, "public Customer ID")->capture_default_str();
  app.add_option("--batch", batch, "rows per INSERT")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--sql", sql_path, "SQL output")->required();
  app.add_option("--bind", bind_path, "StatusEvent bodies, one per registration")->required();
  app.add_option("--mixed", mixed_path, "mixed bodies, one per registration, shuffled")->required();
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<Mailbox> mailboxes(n);
    std::vector<std::string> secrets(n);
    auto sql = open_out(sql_path);
    sql << "-- ews_seed: " << n << " registrations of customer " << customer_id << "\n"
        << "SET autocommit = 0;\nSET unique_checks = 0;\nSET foreign_key_checks = 0;\n"
        << "INSERT INTO customers (id, customer_id, display_name, registration_key_hash, "
           "admin_key_hash) VALUES ("
        << customer_row << ", '" << customer_id << "', 'ews benchmark', X'" << hex(random_bytes(48))
        << "', X'" << hex(random_bytes(48)) << "');\n";
    for (std::size_t i = 0; i < n; ++i) {
      secrets[i] = make_secret();
      mailboxes[i] = {base64(random_bytes(66)), base64(random_bytes(74)), base64(random_bytes(74))};
    }
    auto rows = [&](const char* head, auto row) {
      for (std::size_t start = 0; start < n; start += batch) {
        sql << head;
        for (std::size_t i = start; i < std::min(n, start + batch); ++i) {
          sql << (i == start ? "\n(" : ",\n(") << row(i) << ")";
        }
        sql << ";\n";
      }
    };
    rows("INSERT INTO mailboxes (id, customer_id, address_hmac) VALUES", [&](std::size_t i) {
      return std::to_string(first_id + static_cast<std::int64_t>(i)) + "," +
             std::to_string(customer_row) + ",X'" + hex(random_bytes(32)) + "'";
    });
    rows("INSERT INTO devices (id, customer_id, environment, token_hex) VALUES",
         [&](std::size_t i) {
           return std::to_string(first_id + static_cast<std::int64_t>(i)) + "," +
                  std::to_string(customer_row) + ",'production','" + hex(random_bytes(32)) + "'";
         });
    rows(
        "INSERT INTO registrations (id, customer_id, mailbox_id, device_id, secret_hash, "
        "status_frequency_minutes) VALUES",
        [&](std::size_t i) {
          const std::string id = std::to_string(first_id + static_cast<std::int64_t>(i));
          return id + "," + std::to_string(customer_row) + "," + id + "," + id + ",X'" +
                 hex(sha384(secrets[i])) + "',30";
        });
    sql << "COMMIT;\nSET unique_checks = 1;\nSET foreign_key_checks = 1;\n";
    sql.close();
    if (!sql) throw std::runtime_error("writing " + sql_path + " failed");

    auto bind = open_out(bind_path);
    for (std::size_t i = 0; i < n; ++i) {
      bind << "/ews/v1/notify/" << secrets[i] << '\t'
           << base64(envelope(i % 2 == 1, mailboxes[i], watermark(), status_event())) << "\tbind\n";
    }
    bind.close();
    if (!bind) throw std::runtime_error("writing " + bind_path + " failed");

    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 rng(20261123);
    std::shuffle(order.begin(), order.end(), rng);
    auto mixed = open_out(mixed_path);
    for (const std::size_t i : order) {
      const Mailbox& m = mailboxes[i];
      std::string events;
      const char* label = "";
      switch (i % 5) {
        case 0:
          events = status_event();
          label = "status";
          break;
        case 4:
          events = modified_events(m, i, 1 + static_cast<int>(i % 97));
          label = "modified";
          break;
        default:
          events = new_mail_events(m, i);
          label = "newmail";
          break;
      }
      mixed << "/ews/v1/notify/" << secrets[i] << '\t'
            << base64(envelope(i % 2 == 1, m, watermark(), events)) << '\t' << label << '\n';
    }
    mixed.close();
    if (!mixed) throw std::runtime_error("writing " + mixed_path + " failed");
  } catch (const std::exception& e) {
    std::cerr << "ews_seed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
