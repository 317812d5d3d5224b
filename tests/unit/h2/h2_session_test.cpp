// H2Session against an in-memory nghttp2 server: streams, limits, GOAWAY, resets, flow control.
#include "h2/h2_session.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <map>

#include "test_peer.hpp"

namespace mp::h2 {
namespace {

using test::ServerPeer;

Request make_request(std::uint64_t id, std::string body = "{\"aps\":{\"badge\":1}}") {
  Request r;
  r.method = "POST";
  r.authority = "api.push.apple.com";
  r.path = "/3/device/" + std::to_string(1000 + id);
  r.headers = {{"apns-topic", "com.example.mail"}, {"apns-push-type", "alert"}};
  r.body = std::move(body);
  return r;
}

// The caller side: a FIFO of requests waiting for a stream, and every completion seen once.
struct Client {
  std::unique_ptr<H2Session> session;
  std::deque<std::uint64_t> queue;  // request ids, kept in submission order
  std::map<std::uint64_t, Request> requests;
  std::map<std::uint64_t, Result<Response>> done;
  std::vector<std::uint64_t> completion_order;
  bool requeue_safe = false;  // resend "not processed" failures (as the connection pool will)
  std::vector<Event> other_events;
  int duplicate_completions = 0;
  bool prefaces_exchanged = false;

  explicit Client(SessionLimits limits = {}) {
    auto s = H2Session::create(limits);
    EXPECT_TRUE(s.ok());
    session = std::move(s).value();
  }

  void add(std::uint64_t id, Request r) {
    requests.emplace(id, std::move(r));
    queue.push_back(id);
  }

  void submit_queued() {
    while (!queue.empty() && session->can_submit()) {
      const std::uint64_t id = queue.front();
      queue.pop_front();
      auto sid = session->submit(requests.at(id), id);
      ASSERT_TRUE(sid.ok()) << sid.error().message;
    }
  }

  void collect() {
    for (auto& ev : session->take_events()) {
      if (auto* d = std::get_if<StreamDone>(&ev)) {
        if (done.count(d->request_id) != 0) ++duplicate_completions;
        if (requeue_safe && !d->result.ok() &&
            retry_safety(d->result.error()) == RetrySafety::safe) {
          // Back in front, in request-id order, so the order of submission is kept.
          auto pos = std::lower_bound(queue.begin(), queue.end(), d->request_id);
          queue.insert(pos, d->request_id);
          continue;
        }
        done.insert_or_assign(d->request_id, std::move(d->result));
        completion_order.push_back(d->request_id);
      } else {
        other_events.push_back(std::move(ev));
      }
    }
  }
};

// Request `id` completed, once, with an error whose message holds `text`.
void expect_failed_with(const Client& c, std::uint64_t id, const std::string& text) {
  ASSERT_EQ(c.done.count(id), 1u);
  ASSERT_FALSE(c.done.at(id).ok());
  EXPECT_NE(c.done.at(id).error().message.find(text), std::string::npos)
      << c.done.at(id).error().message;
}

// Moves bytes both ways until neither side has anything to say.
// (The first call lets both SETTINGS cross before any request, as H2Connection::connect does.)
void pump(Client& c, ServerPeer& server, int max_rounds = 10000) {
  if (!c.prefaces_exchanged) {
    c.prefaces_exchanged = true;
    std::string preface;
    (void)c.session->send(preface);
    ASSERT_TRUE(server.receive(preface));
    (void)c.session->receive(server.send());
  }
  for (int i = 0; i < max_rounds; ++i) {
    c.submit_queued();
    std::string out;
    (void)c.session->send(out);
    c.collect();
    if (!out.empty()) {
      ASSERT_TRUE(server.receive(out)) << server.last_error();
    }
    const std::string back = server.send();
    if (!back.empty()) (void)c.session->receive(back);
    c.collect();
    if (out.empty() && back.empty() && (c.queue.empty() || !c.session->can_submit())) return;
  }
  FAIL() << "pump did not settle";
}

TEST(H2Session, RoundTrip) {
  Client c;
  ServerPeer server;
  Request r = make_request(1);
  r.headers.emplace_back("apns-priority", "10");
  c.add(1, r);
  pump(c, server);
  ASSERT_EQ(c.done.count(1), 1u);
  const auto& res = c.done.at(1);
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok /3/device/1001");
  ASSERT_EQ(res->headers.size(), 1u);
  EXPECT_EQ(res->headers[0], (Header{"apns-id", "id-1"}));

  ASSERT_EQ(server.requests().size(), 1u);
  const auto& got = server.requests().begin()->second;
  EXPECT_EQ(got.method, "POST");
  EXPECT_EQ(got.authority, "api.push.apple.com");
  EXPECT_EQ(got.path, "/3/device/1001");
  EXPECT_EQ(got.body, r.body);
  EXPECT_NE(
      std::find(got.headers.begin(), got.headers.end(), Header{"apns-topic", "com.example.mail"}),
      got.headers.end());
  EXPECT_NE(std::find(got.headers.begin(), got.headers.end(), Header{"content-length", "19"}),
            got.headers.end());
  EXPECT_EQ(c.session->active_streams(), 0u);
  EXPECT_EQ(c.duplicate_completions, 0);
}

TEST(H2Session, GetWithoutBody) {
  Client c;
  ServerPeer server;
  Request r = make_request(1, "");
  r.method = "GET";
  c.add(1, r);
  pump(c, server);
  ASSERT_TRUE(c.done.at(1).ok());
  EXPECT_EQ(server.requests().begin()->second.method, "GET");
  EXPECT_TRUE(server.requests().begin()->second.body.empty());
}

TEST(H2Session, ManyConcurrentStreamsRespectThePeerLimit) {
  Client c;
  ServerPeer::Options opts;
  opts.max_concurrent_streams = 50;
  ServerPeer server(opts);
  for (std::uint64_t i = 1; i <= 300; ++i) c.add(i, make_request(i));
  pump(c, server);
  ASSERT_EQ(c.done.size(), 300u);
  for (const auto& [id, res] : c.done) {
    ASSERT_TRUE(res.ok()) << res.error().message;
    EXPECT_EQ(res->body, "ok /3/device/" + std::to_string(1000 + id));
  }
  EXPECT_LE(server.max_open_streams(), 50u);
  EXPECT_TRUE(server.refused().empty());
  EXPECT_EQ(c.duplicate_completions, 0);
}

TEST(H2Session, InvalidRequestsAreRefusedBeforeAnythingIsSent) {
  Client c;
  Request r = make_request(1);
  r.headers.emplace_back("Upper", "x");
  auto a = c.session->submit(r, 1);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, Errc::invalid_argument);
  EXPECT_EQ(retry_safety(a.error()), RetrySafety::never);

  r = make_request(2);
  r.headers.emplace_back("connection", "close");
  EXPECT_FALSE(c.session->submit(r, 2).ok());

  r = make_request(3, std::string(2 * 1024 * 1024, 'x'));
  auto b = c.session->submit(r, 3);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, Errc::invalid_argument);
  EXPECT_EQ(c.session->active_streams(), 0u);
}

TEST(H2Session, ServerLowersMaxConcurrentStreamsToOneMidway) {
  Client c;
  c.requeue_safe = true;
  ServerPeer::Options opts;
  opts.max_concurrent_streams = 10;
  opts.auto_respond = false;
  ServerPeer server(opts);
  for (std::uint64_t i = 1; i <= 30; ++i) c.add(i, make_request(i));
  pump(c, server);
  ASSERT_EQ(server.open_streams(), 10u);
  EXPECT_FALSE(c.session->can_submit());

  // Two answers free two slots; the client fills them before it hears of the new limit of 1,
  // so the server refuses those two (REFUSED_STREAM): they must come back and be resent.
  server.respond(1, 200, "a");
  server.respond(3, 200, "b");
  (void)c.session->receive(server.send());
  c.collect();
  c.submit_queued();
  std::string early;
  (void)c.session->send(early);
  server.set_max_concurrent_streams(1);
  const std::string settings = server.send();
  ASSERT_TRUE(server.receive(early));
  const std::string resets = server.send();
  EXPECT_EQ(server.refused().size(), 2u);
  (void)c.session->receive(settings + resets);
  c.collect();
  EXPECT_EQ(c.session->peer_max_concurrent_streams(), 1u);
  EXPECT_FALSE(c.session->can_submit());

  server.set_auto_respond(true);
  // Answer the eight still open, then everything flows one stream at a time.
  for (std::int32_t id = 5; id <= 19; id += 2) server.respond(id, 200, "c");
  pump(c, server);

  ASSERT_EQ(c.done.size(), 30u);
  for (const auto& [id, res] : c.done) ASSERT_TRUE(res.ok()) << id << ": " << res.error().message;
  EXPECT_EQ(c.duplicate_completions, 0);
  // The order in which the server took requests in is the order of submission.
  std::vector<std::string> paths;
  for (std::int32_t sid : server.completed_order()) paths.push_back(server.requests().at(sid).path);
  ASSERT_EQ(paths.size(), 30u);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(paths[i], "/3/device/" + std::to_string(1001 + i));
  }
  bool saw_settings = false;
  for (const auto& ev : c.other_events) {
    if (auto* s = std::get_if<SettingsReceived>(&ev); s && s->max_concurrent_streams == 1) {
      saw_settings = true;
    }
  }
  EXPECT_TRUE(saw_settings);
}

TEST(H2Session, GoawayInTheMiddleOfABurst) {
  Client c;
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  for (std::uint64_t i = 1; i <= 10; ++i) c.add(i, make_request(i));
  pump(c, server);
  ASSERT_EQ(server.requests().size(), 10u);  // streams 1, 3, ..., 19

  server.goaway(9, NGHTTP2_NO_ERROR);
  for (std::int32_t id = 1; id <= 9; id += 2) server.respond(id, 200, "done");
  c.add(11, make_request(11));  // sent before the GOAWAY arrives: above the last id too
  pump(c, server);

  ASSERT_EQ(c.done.size(), 11u);
  for (std::uint64_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(c.done.at(i).ok()) << c.done.at(i).error().message;
    EXPECT_EQ(c.done.at(i)->body, "done");
  }
  for (std::uint64_t i = 6; i <= 11; ++i) {
    ASSERT_FALSE(c.done.at(i).ok());
    EXPECT_EQ(retry_safety(c.done.at(i).error()), RetrySafety::safe);
    EXPECT_NE(c.done.at(i).error().message.find("GOAWAY"), std::string::npos)
        << c.done.at(i).error().message;
  }
  EXPECT_TRUE(c.session->goaway_received());
  EXPECT_FALSE(c.session->can_submit());
  auto late = c.session->submit(make_request(12), 12);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::unavailable);
  bool saw = false;
  for (const auto& ev : c.other_events) {
    if (auto* g = std::get_if<GoawayReceived>(&ev)) {
      saw = true;
      EXPECT_EQ(g->last_stream_id, 9);
      EXPECT_EQ(g->debug_data, "going away");
    }
  }
  EXPECT_TRUE(saw);
  EXPECT_EQ(c.duplicate_completions, 0);
}

TEST(H2Session, RefusedStreamIsRetryableOtherResetsAreNot) {
  Client c;
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  c.add(1, make_request(1));
  c.add(2, make_request(2));
  pump(c, server);
  server.reset(1, NGHTTP2_REFUSED_STREAM);
  server.reset(3, NGHTTP2_INTERNAL_ERROR);
  pump(c, server);
  ASSERT_EQ(c.done.size(), 2u);
  ASSERT_FALSE(c.done.at(1).ok());
  EXPECT_EQ(retry_safety(c.done.at(1).error()), RetrySafety::safe);
  EXPECT_NE(c.done.at(1).error().message.find("REFUSED_STREAM"), std::string::npos);
  ASSERT_FALSE(c.done.at(2).ok());
  EXPECT_EQ(retry_safety(c.done.at(2).error()), RetrySafety::unknown);
  EXPECT_NE(c.done.at(2).error().message.find("INTERNAL_ERROR"), std::string::npos)
      << c.done.at(2).error().message;
  EXPECT_EQ(c.session->active_streams(), 0u);
}

TEST(H2Session, ResponseBodyOverTheLimitFailsTheStreamOnly) {
  Client c;
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  c.add(1, make_request(1));
  c.add(2, make_request(2));
  pump(c, server);
  server.respond(1, 200, std::string(64 * 1024 + 1, 'x'));
  server.respond(3, 200, std::string(64 * 1024, 'y'));
  pump(c, server);
  ASSERT_FALSE(c.done.at(1).ok());
  EXPECT_EQ(c.done.at(1).error().code, Errc::conflict);
  EXPECT_NE(c.done.at(1).error().message.find("exceeds"), std::string::npos);
  ASSERT_TRUE(c.done.at(2).ok());
  EXPECT_EQ(c.done.at(2)->body.size(), 64u * 1024u);
  EXPECT_EQ(c.duplicate_completions, 0);
  EXPECT_EQ(c.session->active_streams(), 0u);
  EXPECT_TRUE(c.session->can_submit());
}

TEST(H2Session, ResponseHeadersOverTheLimitFailTheStream) {
  SessionLimits limits;
  limits.max_response_header_bytes = 512;
  Client c(limits);
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  c.add(1, make_request(1));
  pump(c, server);
  server.respond(1, 200, "", {{"x-big", std::string(400, 'h')}, {"x-big2", std::string(400, 'h')}});
  pump(c, server);
  expect_failed_with(c, 1, "headers exceed");
}

TEST(H2Session, ResponseHeadersCountAsHpackDoesAndByFields) {
  // 20 fields of 10 bytes: 200 bytes of names and values, 840 as HPACK counts them.
  SessionLimits limits;
  limits.max_response_header_bytes = 512;
  Client c(limits);
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  c.add(1, make_request(1));
  c.add(2, make_request(2));
  pump(c, server);
  Headers many;
  for (int i = 0; i < 20; ++i) many.emplace_back("x-" + std::to_string(100 + i), "abcde");
  server.respond(1, 200, "", many);
  pump(c, server);
  expect_failed_with(c, 1, "headers exceed 512 bytes");

  // Within the byte limit but more fields than allowed.
  SessionLimits few;
  few.max_response_header_fields = 10;
  Client d(few);
  ServerPeer server2(opts);
  d.add(1, make_request(1));
  pump(d, server2);
  Headers eleven;
  for (int i = 0; i < 11; ++i) eleven.emplace_back("x-" + std::to_string(100 + i), "v");
  server2.respond(1, 200, "", eleven);
  pump(d, server2);
  expect_failed_with(d, 1, "more than 10 header fields");
}

TEST(H2Session, ExhaustedStreamIdsStopNewStreamsAndSayGoaway) {
  SessionLimits limits;
  limits.max_stream_id = 5;  // streams 1, 3 and 5
  Client c(limits);
  ServerPeer server;
  for (std::uint64_t id = 1; id <= 3; ++id) c.add(id, make_request(id));
  pump(c, server);
  for (std::uint64_t id = 1; id <= 3; ++id) {
    ASSERT_EQ(c.done.count(id), 1u) << id;
    EXPECT_TRUE(c.done.at(id).ok()) << id;
  }
  EXPECT_TRUE(c.session->stream_ids_exhausted());
  EXPECT_FALSE(c.session->can_submit());
  auto refused = c.session->submit(make_request(4), 4);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::unavailable);
  EXPECT_NE(refused.error().message.find("stream ids exhausted"), std::string::npos);
  EXPECT_EQ(server.goaways_received(),
            std::vector<std::uint32_t>{static_cast<std::uint32_t>(NGHTTP2_NO_ERROR)});
  EXPECT_FALSE(c.session->wants_read());  // GOAWAY sent, no stream left: done
}

TEST(H2Session, LargeRequestBodyHonoursASmallWindow) {
  Client c;
  ServerPeer::Options opts;
  opts.initial_window_size = 1000;
  ServerPeer server(opts);
  std::string body(300 * 1024, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  // Let the server's SETTINGS (window 1000) arrive before the request is submitted.
  pump(c, server);
  c.add(1, make_request(1, body));
  c.submit_queued();
  std::string first;
  (void)c.session->send(first);
  const StreamRecord* rec = c.session->stream(1);
  ASSERT_NE(rec, nullptr);
  EXPECT_EQ(rec->state, StreamState::open);
  EXPECT_LE(rec->body_bytes_sent, 1000u);  // no more than the stream window before an update
  ASSERT_TRUE(server.receive(first));
  pump(c, server);
  ASSERT_TRUE(c.done.at(1).ok()) << c.done.at(1).error().message;
  EXPECT_EQ(server.requests().at(1).body, body);
}

TEST(H2Session, MalformedInputFailsTheSessionAndEveryStreamOnce) {
  Client c;
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  for (std::uint64_t i = 1; i <= 3; ++i) c.add(i, make_request(i));
  pump(c, server);
  c.add(4, make_request(4));  // would be queued behind: never submitted

  // A frame header announcing 4.7 MB (> SETTINGS_MAX_FRAME_SIZE): a connection error.
  (void)c.session->receive(std::string_view("HTTP/1.1 400 Bad Request\r\n\r\n"));
  std::string out;
  Status sent = c.session->send(out);
  c.collect();
  ASSERT_FALSE(sent.ok());
  ASSERT_TRUE(c.session->failure().has_value());
  EXPECT_NE(c.session->failure()->message.find("protocol error"), std::string::npos)
      << c.session->failure()->message;
  ASSERT_EQ(c.done.size(), 3u);
  for (const auto& [id, res] : c.done) {
    ASSERT_FALSE(res.ok());
    EXPECT_EQ(retry_safety(res.error()), RetrySafety::unknown) << res.error().message;
  }
  EXPECT_FALSE(c.session->receive(server.send()).ok());
  EXPECT_FALSE(c.session->can_submit());
  auto again = c.session->submit(make_request(4), 4);
  EXPECT_FALSE(again.ok());
  c.collect();
  EXPECT_EQ(c.done.size(), 3u);
  EXPECT_EQ(c.duplicate_completions, 0);
}

TEST(H2Session, GarbageInsteadOfSettingsFailsBeforeAnythingIsSent) {
  Client c;
  c.add(1, make_request(1));
  c.submit_queued();
  (void)c.session->receive(std::string_view("HTTP/1.1 200 OK\r\n\r\n"));
  std::string out;
  EXPECT_FALSE(c.session->send(out).ok());
  c.collect();
  ASSERT_EQ(c.done.size(), 1u);
  ASSERT_FALSE(c.done.at(1).ok());
  // nghttp2 stops before the HEADERS leaves: safe to retry elsewhere.
  EXPECT_NE(retry_safety(c.done.at(1).error()), RetrySafety::never);
}

TEST(H2Session, PingIsAcknowledged) {
  Client c;
  ServerPeer server;
  ASSERT_TRUE(c.session->ping(0x0102030405060708ULL).ok());
  pump(c, server);
  EXPECT_EQ(server.pings_received(), 1u);
  bool acked = false;
  for (const auto& ev : c.other_events) {
    if (auto* p = std::get_if<PingAcked>(&ev)) acked = p->opaque == 0x0102030405060708ULL;
  }
  EXPECT_TRUE(acked);
}

TEST(H2Session, CancelResetsASentStreamAndDropsAnUnsentOne) {
  Client c;
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  c.add(1, make_request(1));
  pump(c, server);
  auto sent = c.session->cancel(1, "timed out after 5 ms");
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(retry_safety(*sent), RetrySafety::unknown);
  EXPECT_FALSE(c.session->cancel(1, "again").has_value());

  auto sid = c.session->submit(make_request(2), 2);
  ASSERT_TRUE(sid.ok());
  auto unsent = c.session->cancel(*sid, "timed out");
  ASSERT_TRUE(unsent.has_value());
  EXPECT_EQ(retry_safety(*unsent), RetrySafety::safe);
  pump(c, server);
  EXPECT_TRUE(c.done.empty());  // no StreamDone after a cancel
  EXPECT_EQ(server.requests().size(), 1u);
  ASSERT_EQ(server.resets_received().size(), 1u);
  EXPECT_EQ(server.resets_received()[0], static_cast<std::uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(c.session->active_streams(), 0u);
}

TEST(H2Session, GracefulShutdownLetsOpenStreamsFinish) {
  Client c;
  ServerPeer::Options opts;
  opts.auto_respond = false;
  ServerPeer server(opts);
  c.add(1, make_request(1));
  pump(c, server);
  ASSERT_TRUE(c.session->shutdown().ok());
  EXPECT_FALSE(c.session->can_submit());
  pump(c, server);
  EXPECT_TRUE(c.session->wants_read());
  server.respond(1, 200, "late");
  pump(c, server);
  ASSERT_TRUE(c.done.at(1).ok());
  EXPECT_FALSE(c.session->wants_read());
}

TEST(H2Session, LoggablePathKeepsEightCharactersOfTheToken) {
  EXPECT_EQ(loggable_path("/3/device/0123456789abcdef0123"), "/3/device/01234567…");
  EXPECT_EQ(loggable_path("/3/device/abc"), "/3/device/abc");
  EXPECT_EQ(loggable_path("/x/0123456789?secret=1"), "/x/01234567…");
}

}  // namespace
}  // namespace mp::h2
