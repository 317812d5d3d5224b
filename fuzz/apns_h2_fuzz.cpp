// libFuzzer target for what the APNs side parses from the network: the bytes an HTTP/2 server
// sends (H2Session, i.e. nghttp2 plus our stream bookkeeping) and Apple's JSON answers
// (classify_response). No crash, no sanitizer report, and every request completes exactly once.
//
// Input: the first byte picks the target.
//   even: HTTP/2 server bytes. The next byte sets the chunk size the rest is fed in (1..256), so
//         frames split at every boundary are tried; three requests are in flight, more are
//         submitted whenever the session takes them.
//   odd:  an APNs answer: two bytes of status (big-endian, any value), then the JSON body.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include "apns/response.hpp"
#include "h2/h2_session.hpp"

namespace {

using namespace mp;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

h2::Request request(std::uint64_t n) {
  h2::Request r;
  r.authority = "api.push.apple.com";
  r.path = "/3/device/" + std::string(64, static_cast<char>('a' + n % 6));
  r.headers = {{"apns-topic", "com.example.mail"}, {"apns-push-type", "alert"}};
  r.body = R"({"aps":{"badge":)" + std::to_string(n) + "}}";
  return r;
}

class Driver {
 public:
  explicit Driver(std::unique_ptr<h2::H2Session> session) : session_(std::move(session)) {}

  void submit_while_possible() {
    while (submitted_.size() < 12 && session_->can_submit()) {
      const std::uint64_t id = next_id_++;
      const auto stream = session_->submit(request(id), id);
      if (!stream) break;
      submitted_.insert(id);
    }
  }

  void drain() {
    std::string out;
    (void)session_->send(out);
    for (auto& event : session_->take_events()) {
      if (const auto* done = std::get_if<h2::StreamDone>(&event)) {
        require(submitted_.count(done->request_id) == 1);
        require(completed_.insert(done->request_id).second);  // exactly once
        if (done->result) {
          require(done->result->status >= 100 && done->result->status <= 999);
          require(done->result->body.size() <= h2::SessionLimits{}.max_response_body_bytes);
        }
      }
    }
  }

  void feed(std::string_view bytes, std::size_t chunk) {
    submit_while_possible();
    drain();
    while (!bytes.empty()) {
      const std::size_t n = std::min(chunk, bytes.size());
      const auto st = session_->receive(bytes.substr(0, n));
      bytes.remove_prefix(n);
      drain();
      if (!st) break;
      submit_while_possible();
      drain();
    }
    // Whatever state it is in, failing the session completes everything still pending.
    session_->fail(Error{Errc::io, "fuzz input over"});
    drain();
    require(completed_ == submitted_);
  }

 private:
  std::unique_ptr<h2::H2Session> session_;
  std::set<std::uint64_t> submitted_;
  std::set<std::uint64_t> completed_;
  std::uint64_t next_id_ = 1;
};

void fuzz_session(std::string_view input) {
  if (input.empty()) return;
  const std::size_t chunk = static_cast<unsigned char>(input.front()) + 1;
  auto session = h2::H2Session::create();
  require(session.ok());
  Driver driver(std::move(*session));
  driver.feed(input.substr(1), chunk);
}

void fuzz_response(std::string_view input) {
  if (input.size() < 2) return;
  const int status =
      (static_cast<unsigned char>(input[0]) << 8) | static_cast<unsigned char>(input[1]);
  const auto action = apns::classify_response(status, input.substr(2), "apns-id-from-fuzz");
  // What reaches logs and metrics from Apple's body is printable ASCII only.
  for (char c : action.reason) require(c >= 0x20 && c < 0x7f);
  for (char c : action.apns_id) require(c >= 0x20 && c < 0x7f);
  require(action.http_status == status);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if ((data[0] & 1) == 0) {
    fuzz_session(input.substr(1));
  } else {
    fuzz_response(input.substr(1));
  }
  return 0;
}
