// Tests of src/http/ticket_keys: sessions resume across two server contexts that share the
// region secret (two instances behind a load balancer), not across regions, and keys rotate.
#include "http/ticket_keys.hpp"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "common/openssl_handles.hpp"
#include "http/listener_tls.hpp"
#include "test_env.hpp"

namespace mp::http {
namespace {

using namespace std::chrono_literals;

std::chrono::system_clock::time_point g_now = std::chrono::system_clock::time_point{} + 1000h;
std::chrono::system_clock::time_point test_now() {
  return g_now;
}

keys::RegionSecret secret_of(char fill) {
  const std::string b64 = fill == 'a' ? "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="
                                      : "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";
  auto s = keys::RegionSecret::from_text("region-secret " + b64 + "\n");
  EXPECT_TRUE(s.ok());
  return std::move(*s);
}

std::shared_ptr<boost::asio::ssl::context> server_context(const TicketKeys* tickets) {
  auto pem = read_server_tls_files({test::dev_tls().cert_chain, test::dev_tls().key});
  EXPECT_TRUE(pem.ok());
  auto ctx =
      make_server_tls_context(*pem, {test::dev_tls().cert_chain, test::dev_tls().key}, tickets);
  EXPECT_TRUE(ctx.ok());
  return *ctx;
}

// One TLS 1.3 connection in memory; returns the session the client got (tickets are read after
// the handshake) and whether it was a resumption.
struct Outcome {
  SSL_SESSION* session = nullptr;  // owned by the caller
  bool resumed = false;
};

Outcome connect(SSL_CTX* server_ctx, SSL_SESSION* resume) {
  SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
  // No client-side cache: freeing a context with cached sessions marks them not resumable.
  SslPtr client(SSL_new(client_ctx.get()));
  SslPtr server(SSL_new(server_ctx));
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_connect_state(client.get());
  SSL_set_accept_state(server.get());
  if (resume) SSL_set_session(client.get(), resume);
  char buf[64];
  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 50 && !(client_done && server_done); ++round) {
    if (!client_done) client_done = SSL_do_handshake(client.get()) == 1;
    if (!server_done) server_done = SSL_do_handshake(server.get()) == 1;
  }
  EXPECT_TRUE(client_done && server_done) << ERR_error_string(ERR_get_error(), nullptr);
  // The server's tickets travel after the handshake: a write lets the client read them.
  EXPECT_EQ(SSL_write(server.get(), "x", 1), 1);
  EXPECT_EQ(SSL_read(client.get(), buf, sizeof buf), 1);
  Outcome out;
  out.resumed = SSL_session_reused(client.get()) == 1;
  out.session = SSL_get1_session(client.get());
  // A connection freed without a shutdown marks its session not resumable.
  SSL_set_shutdown(client.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_set_shutdown(server.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  return out;
}

TEST(TicketKeys, ASessionFromOneInstanceResumesOnAnotherOfTheRegion) {
  const auto secret = secret_of('a');
  const TicketKeys keys_a(secret, 3600s, &test_now);
  const TicketKeys keys_b(secret, 3600s, &test_now);
  auto instance_a = server_context(&keys_a);
  auto instance_b = server_context(&keys_b);
  Outcome first = connect(instance_a->native_handle(), nullptr);
  ASSERT_NE(first.session, nullptr);
  EXPECT_FALSE(first.resumed);
  Outcome second = connect(instance_b->native_handle(), first.session);
  EXPECT_TRUE(second.resumed) << "the ticket of instance A opened on instance B";
  SSL_SESSION_free(first.session);
  SSL_SESSION_free(second.session);
}

TEST(TicketKeys, AnotherRegionOrOpenSslsOwnKeysCannotOpenTheTicket) {
  const auto secret = secret_of('a');
  const auto other = secret_of('b');
  const TicketKeys keys(secret, 3600s, &test_now);
  const TicketKeys other_keys(other, 3600s, &test_now);
  auto ours = server_context(&keys);
  auto theirs = server_context(&other_keys);
  auto plain = server_context(nullptr);
  Outcome first = connect(ours->native_handle(), nullptr);
  Outcome elsewhere = connect(theirs->native_handle(), first.session);
  EXPECT_FALSE(elsewhere.resumed);
  Outcome without = connect(plain->native_handle(), first.session);
  EXPECT_FALSE(without.resumed);
  for (auto* s : {first.session, elsewhere.session, without.session}) SSL_SESSION_free(s);
}

TEST(TicketKeys, KeysRotateEachPeriodAndThePreviousOneIsStillAccepted) {
  const auto secret = secret_of('a');
  const TicketKeys keys(secret, 3600s, &test_now);
  EXPECT_EQ(keys.period_at(std::chrono::system_clock::time_point{} + 7200s), 2u);
  auto server = server_context(&keys);
  g_now = std::chrono::system_clock::time_point{} + 1000h;
  Outcome first = connect(server->native_handle(), nullptr);
  g_now += 1h;  // the next period: the old key still opens it
  Outcome next_period = connect(server->native_handle(), first.session);
  EXPECT_TRUE(next_period.resumed);
  g_now += 2h;  // two periods on: a full handshake
  Outcome too_old = connect(server->native_handle(), first.session);
  EXPECT_FALSE(too_old.resumed);
  for (auto* s : {first.session, next_period.session, too_old.session}) SSL_SESSION_free(s);
  g_now = std::chrono::system_clock::time_point{} + 1000h;
}

}  // namespace
}  // namespace mp::http
