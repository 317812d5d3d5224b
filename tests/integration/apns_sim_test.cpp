// apns-sim driven by real HTTP/2 clients (curl, nghttp, h2load) with the test certificates of
// certs/make-apns-test-certs.sh: APNs checks, handshake refusals, faults and the control API.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_apns_sim.hpp"
#include "test_env.hpp"

namespace mp::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kToken(64, 'a');
const std::string kOtherToken = std::string(62, 'b') + "0F";
constexpr const char* kPayload = R"({"aps":{"badge":3}})";

struct Reply {
  int exit_code = -1;  // curl's; 0 when an HTTP reply arrived
  int status = 0;
  std::string body;
  std::string headers;
  std::string output;  // curl's stderr, for failure messages
  std::string header(const std::string& name) const {
    std::istringstream lines(headers);
    for (std::string line; std::getline(lines, line);) {
      if (line.size() > name.size() + 1 && line.compare(0, name.size(), name) == 0 &&
          line[name.size()] == ':') {
        std::string v = line.substr(name.size() + 1);
        while (!v.empty() && (v.front() == ' ')) v.erase(0, 1);
        while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.pop_back();
        return v;
      }
    }
    return "";
  }
  json json_body() const { return json::parse(body, nullptr, false); }
};

// The simulator, and the URL of a device on it.
class Simulator : public ApnsSimProcess {
 public:
  using ApnsSimProcess::ApnsSimProcess;
  std::string url(const std::string& token) const {
    return "https://127.0.0.1:" + std::to_string(h2_port()) + "/3/device/" + token;
  }
};

struct PushOptions {
  std::string cert = "mail";  // a <name> of the test certificates, or "" for none
  std::vector<std::string> headers = {"apns-topic: com.example.mail", "apns-push-type: alert",
                                      "apns-priority: 10"};
  std::string body = kPayload;
  std::string method = "POST";
  int max_time_s = 10;
  std::vector<std::string> more_urls;  // sent after the first, on the same connection if it lives
};

PushOptions with_cert(const std::string& name) {
  PushOptions o;
  o.cert = name;
  return o;
}

// POSTs through `curl --http2` (ALPN h2, verifying the simulator against the test CA).
Reply push(const Simulator& sim, const std::string& url, const PushOptions& o = {}) {
  static int counter = 0;
  const std::string tag = std::to_string(++counter);
  const fs::path headers = sim.dir() / ("headers-" + tag), body = sim.dir() / ("body-" + tag),
                 payload = sim.dir() / ("payload-" + tag);
  write_file(payload, o.body);
  const fs::path& c = apns_test_certs();
  std::vector<std::string> argv = {"timeout",
                                   std::to_string(o.max_time_s + 10),
                                   "curl",
                                   "--http2",
                                   "-sS",
                                   "--max-time",
                                   std::to_string(o.max_time_s),
                                   "--cacert",
                                   (c / "apple-ca.crt").string(),
                                   "-X",
                                   o.method,
                                   "-D",
                                   headers.string(),
                                   "-o",
                                   body.string()};
  if (!o.cert.empty()) {
    argv.insert(argv.end(), {"--cert", (c / (o.cert + ".crt")).string(), "--key",
                             (c / (o.cert + ".key")).string()});
  }
  for (const auto& h : o.headers) argv.insert(argv.end(), {"-H", h});
  if (o.method == "POST") argv.insert(argv.end(), {"--data-binary", "@" + payload.string()});
  argv.push_back(url);
  for (const auto& more : o.more_urls) argv.push_back(more);
  Reply r;
  r.exit_code = run_command(argv, &r.output);
  std::error_code ec;
  if (fs::exists(headers, ec)) r.headers = read_file(headers);
  if (fs::exists(body, ec)) r.body = read_file(body);
  // With several URLs the header file holds every reply; the last status line wins.
  std::istringstream lines(r.headers);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("HTTP/2 ", 0) == 0) r.status = std::stoi(line.substr(7, 3));
  }
  return r;
}

// The per-request log line is debug: the simulators of the token checks run at that level, and
// the check proves the token was logged (redacted) before it proves the full one was not.
const std::vector<std::string> kDebugLog = {"--log-level", "debug"};

void expect_token_only_redacted(const Simulator& sim, const std::string& token) {
  const std::string log = sim.log();
  EXPECT_NE(log.find("\"token\":\"" + token.substr(0, 8)), std::string::npos)
      << "no request line with the token prefix: the check below would prove nothing\n"
      << log;
  auto lower = [](std::string t) {
    for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return t;
  };
  EXPECT_EQ(lower(log).find(lower(token)), std::string::npos) << "a full device token in the log";
}

bool is_uuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

std::string fingerprint(const std::string& cert_name) {
  std::string out;
  const int rc =
      run_command({"openssl", "x509", "-in", (apns_test_certs() / (cert_name + ".crt")).string(),
                   "-noout", "-fingerprint", "-sha256"},
                  &out);
  if (rc != 0) throw std::runtime_error("openssl x509 failed: " + out);
  const auto eq = out.find('=');
  std::string fp = out.substr(eq + 1);
  while (!fp.empty() && (fp.back() == '\n' || fp.back() == '\r')) fp.pop_back();
  return fp;  // "AB:CD:..."; the simulator accepts colons and any case
}

// ---- tests -------------------------------------------------------------------------------------

TEST(ApnsSim, ValidCertificateAndTopicIsAcceptedAndRecorded) {
  Simulator sim(kDebugLog);
  const Reply r = push(sim, sim.url(kToken));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(is_uuid(r.header("apns-id"))) << r.headers;

  const json accepted = sim.control("GET", "/accepted");
  ASSERT_EQ(accepted["records"].size(), 1u) << accepted.dump();
  const json& rec = accepted["records"][0];
  EXPECT_EQ(rec["token"], kToken);
  EXPECT_EQ(rec["topic"], "com.example.mail");
  EXPECT_EQ(rec["payload"], kPayload);
  EXPECT_EQ(rec["apns_id"], r.header("apns-id"));
  EXPECT_EQ(rec["headers"]["apns-push-type"], "alert");
  EXPECT_EQ(rec["headers"]["apns-priority"], "10");
  EXPECT_EQ(rec["client_subject"],
            "UID=com.example.mail, CN=Apple Push Services: com.example.mail, OU=ABCDE12345, "
            "O=Example Corp, C=US");
  EXPECT_EQ(rec["seq"], 1);

  // A client apns-id is echoed; topics from the certificate's topics extension are allowed.
  PushOptions voip;
  voip.headers = {"apns-topic: com.example.mail.voip", "apns-push-type: voip",
                  "apns-id: 123e4567-e89b-12d3-a456-426614174000"};
  const Reply v = push(sim, sim.url(kOtherToken), voip);
  EXPECT_EQ(v.status, 200) << v.body;
  EXPECT_EQ(v.header("apns-id"), "123e4567-e89b-12d3-a456-426614174000");

  // The logs never hold a full token.
  expect_token_only_redacted(sim, kToken);
  expect_token_only_redacted(sim, kOtherToken);
}

TEST(ApnsSim, WrongTopicIsTopicDisallowed) {
  Simulator sim;
  PushOptions o;
  o.headers = {"apns-topic: com.example.other"};
  Reply r = push(sim, sim.url(kToken), o);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json_body()["reason"], "TopicDisallowed") << r.body;
  EXPECT_TRUE(is_uuid(r.header("apns-id")));

  // The other app's certificate may push to it.
  o.cert = "other";
  r = push(sim, sim.url(kToken), o);
  EXPECT_EQ(r.status, 200) << r.body;

  // No apns-topic with a certificate of several topics: MissingTopic. With one (UID only): its.
  o.cert = "mail";
  o.headers = {};
  r = push(sim, sim.url(kToken), o);
  EXPECT_EQ(r.json_body()["reason"], "MissingTopic") << r.body;
  o.cert = "mail-no-topics";
  r = push(sim, sim.url(kToken), o);
  EXPECT_EQ(r.status, 200) << r.body;

  EXPECT_EQ(sim.control("GET", "/stats")["by_reason"]["TopicDisallowed"], 1);
}

TEST(ApnsSim, BadDeviceTokenIsRefused) {
  Simulator sim;
  for (const std::string& token : {std::string("abc"), std::string(63, 'a'), std::string(202, 'a'),
                                   std::string(62, 'a') + "zz"}) {
    const Reply r = push(sim, sim.url(token));
    EXPECT_EQ(r.status, 400) << token;
    EXPECT_EQ(r.json_body()["reason"], "BadDeviceToken") << r.body;
  }
  const Reply upper = push(sim, sim.url(std::string(64, 'A')));
  EXPECT_EQ(upper.status, 200) << upper.body;
  EXPECT_EQ(sim.control("GET", "/stats")["accepted"], 1);
}

TEST(ApnsSim, RequestChecksFollowApple) {
  Simulator sim;
  struct Case {
    std::string name;
    PushOptions options;
    std::string path;
    int status;
    std::string reason;
  };
  PushOptions base;
  std::vector<Case> cases;
  auto with_header = [&](const std::string& h) {  // replaces a header of the same name
    PushOptions o = base;
    const std::string name = h.substr(0, h.find(':') + 1);
    std::erase_if(o.headers, [&](const std::string& e) { return e.starts_with(name); });
    o.headers.push_back(h);
    return o;
  };
  cases.push_back({"method",
                   [&] {
                     PushOptions o = base;
                     o.method = "GET";
                     return o;
                   }(),
                   "/3/device/" + kToken, 405, "MethodNotAllowed"});
  cases.push_back({"path", base, "/3/devices/" + kToken, 404, "BadPath"});
  cases.push_back({"no token", base, "/3/device/", 400, "MissingDeviceToken"});
  cases.push_back({"push type", with_header("apns-push-type: shout"), "", 400, "InvalidPushType"});
  cases.push_back({"priority", with_header("apns-priority: 7"), "", 400, "BadPriority"});
  cases.push_back(
      {"expiration", with_header("apns-expiration: soon"), "", 400, "BadExpirationDate"});
  cases.push_back({"collapse id", with_header("apns-collapse-id: " + std::string(65, 'c')), "", 400,
                   "BadCollapseId"});
  cases.push_back({"apns-id", with_header("apns-id: not-a-uuid"), "", 400, "BadMessageId"});
  cases.push_back({"duplicate",
                   [&] {
                     PushOptions o = base;
                     o.headers.push_back("apns-priority: 5");
                     return o;
                   }(),
                   "", 400, "DuplicateHeaders"});
  cases.push_back({"too large",
                   [&] {
                     PushOptions o = base;
                     o.body = R"({"aps":{"alert":")" + std::string(4100, 'x') + R"("}})";
                     return o;
                   }(),
                   "", 413, "PayloadTooLarge"});
  cases.push_back({"empty",
                   [&] {
                     PushOptions o = base;
                     o.body = "";
                     return o;
                   }(),
                   "", 400, "PayloadEmpty"});
  cases.push_back({"not json",
                   [&] {
                     PushOptions o = base;
                     o.body = "{\"aps\":";
                     return o;
                   }(),
                   "", 400, "BadPayload"});
  cases.push_back({"no aps",
                   [&] {
                     PushOptions o = base;
                     o.body = R"({"badge":1})";
                     return o;
                   }(),
                   "", 400, "BadPayload"});
  for (const auto& c : cases) {
    const std::string url = "https://127.0.0.1:" + std::to_string(sim.h2_port()) +
                            (c.path.empty() ? "/3/device/" + kToken : c.path);
    const Reply r = push(sim, url, c.options);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body << r.output;
    EXPECT_EQ(r.json_body().value("reason", ""), c.reason) << c.name << ": " << r.body;
  }
  const json stats = sim.control("GET", "/stats");
  EXPECT_EQ(stats["accepted"], 0);
  EXPECT_EQ(stats["responses"], cases.size());
}

TEST(ApnsSim, HandshakeRefusedForWrongCaExpiredAndNotYetValidCertificates) {
  Simulator sim;
  for (const std::string cert : {"mail-wrong-ca", "mail-expired", "mail-not-yet-valid", ""}) {
    PushOptions o;
    o.cert = cert;
    const Reply r = push(sim, sim.url(kToken), o);
    EXPECT_NE(r.exit_code, 0) << (cert.empty() ? "no certificate" : cert) << ": " << r.output;
    EXPECT_EQ(r.status, 0) << cert;
  }
  const json stats = sim.control("GET", "/stats");
  EXPECT_EQ(stats["handshakes_failed"], 4) << stats.dump();
  EXPECT_EQ(stats["connections_total"], 0) << stats.dump();
  EXPECT_EQ(stats["accepted"], 0);
  EXPECT_TRUE(stats["handshake_failures"].contains("certificate has expired")) << stats.dump();
  EXPECT_TRUE(stats["handshake_failures"].contains("certificate is not yet valid")) << stats.dump();
}

TEST(ApnsSim, CertificateEnvironmentMustMatchTheServer) {
  Simulator sim({"--environment", "production"});
  EXPECT_EQ(push(sim, sim.url(kToken), with_cert("mail-prod")).status, 200);
  EXPECT_EQ(push(sim, sim.url(kToken), with_cert("mail")).status, 200);  // both OIDs
  const Reply r = push(sim, sim.url(kToken), with_cert("mail-dev"));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.json_body()["reason"], "BadCertificateEnvironment") << r.body;
}

TEST(ApnsSim, UnregisteredFaultAnswers410WithTimestamp) {
  Simulator sim({"--unregistered", kOtherToken, "--log-level", "debug"});
  Reply r = push(sim, sim.url(kOtherToken));
  EXPECT_EQ(r.status, 410);
  EXPECT_EQ(r.json_body()["reason"], "Unregistered") << r.body;
  EXPECT_TRUE(r.json_body()["timestamp"].is_number_integer()) << r.body;

  sim.control("POST", "/faults",
              json{{"unregistered", {{{"token", kToken}, {"timestamp", 1700000000000}}}}}.dump());
  r = push(sim, sim.url(kToken));
  EXPECT_EQ(r.status, 410);
  EXPECT_EQ(r.json_body()["timestamp"], 1700000000000) << r.body;
  EXPECT_EQ(push(sim, sim.url(kOtherToken)).status, 200);  // the list was replaced
  expect_token_only_redacted(sim, kToken);
  expect_token_only_redacted(sim, kOtherToken);
}

TEST(ApnsSim, ErrorStatusAndBadCertificateFaults) {
  Simulator sim({"--faults", R"({"next_statuses":[429,503,500]})"});
  for (const auto& [status, reason] : std::vector<std::pair<int, std::string>>{
           {429, "TooManyRequests"}, {503, "ServiceUnavailable"}, {500, "InternalServerError"}}) {
    const Reply r = push(sim, sim.url(kToken));
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.json_body()["reason"], reason) << r.body;
  }
  EXPECT_EQ(push(sim, sim.url(kToken)).status, 200);

  sim.control("POST", "/faults", json{{"bad_certificate", {fingerprint("mail")}}}.dump());
  Reply r = push(sim, sim.url(kToken));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.json_body()["reason"], "BadCertificate") << r.body;
  EXPECT_EQ(push(sim, sim.url(kToken), with_cert("mail-dev")).status, 200);

  // Revoked: refused at the handshake.
  sim.control("POST", "/faults",
              json{{"bad_certificate", json::array()}, {"revoked", {fingerprint("mail")}}}.dump());
  r = push(sim, sim.url(kToken));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_EQ(sim.control("GET", "/stats")["handshake_failures"]["certificate revoked"], 1);

  // A full 1.0 error rate.
  sim.control("POST", "/faults", R"({"revoked":[],"error_rates":{"503":1.0}})");
  EXPECT_EQ(push(sim, sim.url(kToken)).status, 503);
}

TEST(ApnsSim, GoawayAfterNStreams) {
  Simulator sim({"--goaway-after", "2"});
  // curl sends one request at a time: the third goes on a new connection.
  PushOptions o;
  o.more_urls = {sim.url(kToken), sim.url(kToken)};
  const Reply r = push(sim, sim.url(kToken), o);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.status, 200);
  json stats = sim.control("GET", "/stats");
  EXPECT_EQ(stats["goaways_sent"], 1) << stats.dump();
  EXPECT_EQ(stats["connections_total"], 2) << stats.dump();
  const json records = sim.control("GET", "/accepted")["records"];
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0]["connection"], records[1]["connection"]);
  EXPECT_NE(records[1]["connection"], records[2]["connection"]);

  // nghttp sends 4 at once: two processed, last-stream-id = the second, the rest refused.
  sim.control("POST", "/reset");
  const fs::path& c = apns_test_certs();
  const fs::path payload = sim.dir() / "payload.json";
  write_file(payload, kPayload);
  std::string out;
  const int rc =
      run_command({"timeout", "20", "nghttp", "-v", "-n", "-m", "4", "--cert",
                   (c / "mail.crt").string(), "--key", (c / "mail.key").string(), "-H",
                   "apns-topic: com.example.mail", "-d", payload.string(), sim.url(kToken)},
                  &out);
  EXPECT_NE(rc, 124) << "nghttp timed out: " << out;
  EXPECT_NE(out.find("recv GOAWAY frame"), std::string::npos) << out;
  stats = sim.control("GET", "/stats");
  // How many of the other two the simulator refuses (rather than nghttp never sending them)
  // depends on read boundaries; what matters is that nothing above last-stream-id is processed.
  EXPECT_EQ(stats["accepted"], 2) << stats.dump();
  const json processed = sim.control("GET", "/accepted")["records"];
  ASSERT_EQ(processed.size(), 2u) << processed.dump();
  const int last_stream_id = processed[1]["stream"].get<int>();
  EXPECT_NE(out.find("last_stream_id=" + std::to_string(last_stream_id)), std::string::npos) << out;
  for (const json& rec : processed) {
    EXPECT_LE(rec["stream"].get<int>(), last_stream_id) << processed.dump();
  }
  EXPECT_EQ(stats["responses"], 2) << stats.dump();
}

TEST(ApnsSim, AbruptCloseAfterNStreams) {
  // curl sends one request at a time on one connection: both answered, then the TCP close.
  // (A third request on that connection would race the close, so there is none.)
  Simulator sim({"--close-after", "2"});
  PushOptions o;
  o.more_urls = {sim.url(kToken)};
  const Reply r = push(sim, sim.url(kToken), o);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.status, 200) << r.output;
  const json stats = sim.control("GET", "/stats");
  EXPECT_EQ(stats["accepted"], 2) << stats.dump();
  EXPECT_EQ(stats["abrupt_closes"], 1) << stats.dump();
  EXPECT_EQ(stats["goaways_sent"], 0) << stats.dump();
  EXPECT_EQ(stats["connections_total"], 1) << stats.dump();
  EXPECT_TRUE(sim.wait_for_stat("connections_open", 0)) << sim.control("GET", "/stats").dump();
}

TEST(ApnsSim, LatencyDelaysEachStreamWithoutHoldingUpTheOthers) {
  Simulator sim({"--latency-ms", "600"});
  const fs::path& c = apns_test_certs();
  const fs::path payload = sim.dir() / "payload.json";
  write_file(payload, kPayload);
  const auto start = std::chrono::steady_clock::now();
  std::string out;
  const int rc =
      run_command({"timeout", "20", "nghttp", "-n", "-m", "4", "--cert", (c / "mail.crt").string(),
                   "--key", (c / "mail.key").string(), "-H", "apns-topic: com.example.mail", "-d",
                   payload.string(), sim.url(kToken)},
                  &out);
  const auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - start)
                           .count();
  EXPECT_EQ(rc, 0) << out;
  EXPECT_GE(took_ms, 600);
  EXPECT_LT(took_ms, 4 * 600) << "the four streams were answered one after another";
  EXPECT_EQ(sim.control("GET", "/stats")["accepted"], 4);
}

TEST(ApnsSim, MaxConcurrentStreamsAtStartAndAtRunTime) {
  // A wide latency window: nghttp must still be connected when the second SETTINGS goes out.
  Simulator sim({"--max-concurrent-streams", "1", "--latency-ms", "6000"});
  const fs::path& c = apns_test_certs();
  const fs::path payload = sim.dir() / "payload.json";
  write_file(payload, kPayload);
  // nghttp stays connected while its request waits out the latency; the new SETTINGS arrives.
  ChildProcess nghttp(
      "nghttp",
      {"-v", "-n", "--cert", (c / "mail.crt").string(), "--key", (c / "mail.key").string(), "-H",
       "apns-topic: com.example.mail", "-d", payload.string(), sim.url(kToken)},
      sim.dir() / "nghttp.log");
  ASSERT_TRUE(nghttp.wait_for_log("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):1]", 10s)) << nghttp.log();
  sim.control("POST", "/faults", R"({"max_concurrent_streams":7})");
  EXPECT_TRUE(nghttp.wait_for_log("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]", 10s)) << nghttp.log();
  EXPECT_EQ(nghttp.wait(25s), 0) << nghttp.log();
}

TEST(ApnsSim, SilentModeAnswersNothing) {
  Simulator sim;
  EXPECT_EQ(push(sim, sim.url(kToken)).status, 200);
  sim.control("POST", "/faults", R"({"silent":true})");
  PushOptions o;
  o.max_time_s = 2;
  const Reply r = push(sim, sim.url(kToken), o);
  EXPECT_EQ(r.exit_code, 28) << r.output;  // curl: operation timed out
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(sim.control("GET", "/stats")["accepted"], 1);
}

TEST(ApnsSim, ControlApiResetStatsAndErrors) {
  Simulator sim({"--latency-ms", "0"});
  EXPECT_EQ(sim.control("GET", "/healthz")["ok"], true);
  EXPECT_EQ(push(sim, sim.url(kToken)).status, 200);
  EXPECT_EQ(push(sim, sim.url("zz")).status, 400);
  json stats = sim.control("GET", "/stats");
  EXPECT_EQ(stats["accepted"], 1);
  EXPECT_EQ(stats["responses"], 2);
  EXPECT_EQ(stats["by_status"]["200"], 1);
  EXPECT_EQ(stats["by_status"]["400"], 1);
  EXPECT_EQ(stats["by_reason"]["BadDeviceToken"], 1);
  EXPECT_EQ(stats["connections_total"], 2);
  EXPECT_TRUE(sim.wait_for_stat("connections_open", 0)) << sim.control("GET", "/stats").dump();

  const json faults =
      sim.control("POST", "/faults", R"({"latency_ms":5,"goaway_after_streams":9})");
  EXPECT_EQ(faults["latency_ms"], 5);
  EXPECT_EQ(faults["goaway_after_streams"], 9);
  int status = 0;
  sim.control("POST", "/faults", R"({"no_such_fault":1})", &status);
  EXPECT_EQ(status, 400);
  sim.control("POST", "/faults", "{not json", &status);
  EXPECT_EQ(status, 400);
  sim.control("GET", "/nowhere", "", &status);
  EXPECT_EQ(status, 404);

  EXPECT_EQ(sim.control("POST", "/reset")["ok"], true);
  stats = sim.control("GET", "/stats");
  EXPECT_EQ(stats["accepted"], 0);
  EXPECT_EQ(stats["responses"], 0);
  EXPECT_TRUE(sim.control("GET", "/accepted")["records"].empty());
  EXPECT_EQ(sim.control("GET", "/faults")["latency_ms"], 0);  // back to the start-up value

  // Sequence numbers keep counting after a reset, so since=N never repeats a record.
  EXPECT_EQ(push(sim, sim.url(kToken)).status, 200);
  EXPECT_EQ(push(sim, sim.url(kOtherToken)).status, 200);
  const json all = sim.control("GET", "/accepted");
  ASSERT_EQ(all["records"].size(), 2u);
  EXPECT_EQ(all["records"][0]["seq"], 2);
  const json later = sim.control("GET", "/accepted?since=2");
  ASSERT_EQ(later["records"].size(), 1u);
  EXPECT_EQ(later["records"][0]["token"], kOtherToken.substr(0, 62) + "0f");
}

TEST(ApnsSim, H2loadDrivesNoClientCertMode) {
  Simulator sim({}, /*client_cert=*/false);
  const fs::path payload = sim.dir() / "payload.json";
  write_file(payload, kPayload);
  std::string out;
  const int rc =
      run_command({"timeout", "60", "h2load", "-n", "2000", "-c", "4", "-m", "20", "-H",
                   "apns-topic: com.example.mail", "-d", payload.string(), sim.url(kToken)},
                  &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("2000 succeeded"), std::string::npos) << out;
  EXPECT_NE(out.find("status codes: 2000 2xx"), std::string::npos) << out;
  EXPECT_EQ(sim.control("GET", "/stats")["accepted"], 2000);

  // Without a certificate the topic must come from the header.
  const Reply r = push(sim, sim.url(kToken), [] {
    PushOptions o = with_cert("");
    o.headers = {};
    return o;
  }());
  EXPECT_EQ(r.json_body()["reason"], "MissingTopic") << r.body << r.output;
}

}  // namespace
}  // namespace mp::test
