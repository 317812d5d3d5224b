// Certificate fields as text and time points (see x509_fields.hpp).
#include "certs/x509_fields.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>

#include <cctype>
#include <cstdio>

#include "common/openssl_handles.hpp"
#include "common/text.hpp"

namespace mp::certs::detail {

using Clock = std::chrono::system_clock;

std::string printable(std::string_view text, std::size_t limit) {
  std::string out = printable_ascii(text, limit);
  if (text.size() > limit) out += "...";
  return out;
}

std::string rfc2253(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : "";
}

std::optional<CertificateTime> certificate_time(const ASN1_TIME* time) {
  CertificateTime out;
  if (time == nullptr || ASN1_TIME_to_tm(time, &out.parts) != 1) return std::nullopt;
  using namespace std::chrono;
  const std::tm& t = out.parts;
  const year_month_day day{year{t.tm_year + 1900}, month{static_cast<unsigned>(t.tm_mon + 1)},
                           std::chrono::day{static_cast<unsigned>(t.tm_mday)}};
  if (!day.ok()) return std::nullopt;
  const seconds since_epoch =
      sys_days{day}.time_since_epoch() + hours{t.tm_hour} + minutes{t.tm_min} + seconds{t.tm_sec};
  // GeneralizedTime reaches year 9999, past what a nanosecond time_point holds: clamp.
  const auto limit = duration_cast<seconds>(Clock::time_point::max().time_since_epoch());
  if (since_epoch >= limit) {
    out.point = Clock::time_point::max();
  } else if (since_epoch <= -limit) {
    out.point = Clock::time_point::min();
  } else {
    out.point = Clock::time_point(duration_cast<Clock::duration>(since_epoch));
  }
  return out;
}

std::string utc_text(const std::tm& t) {
  char text[40];
  std::snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d", t.tm_year + 1900, t.tm_mon + 1,
                t.tm_mday, t.tm_hour, t.tm_min);
  return text;
}

std::string der_of(X509* certificate) {
  const int size = i2d_X509(certificate, nullptr);
  if (size <= 0) return "";
  std::string der(static_cast<std::size_t>(size), '\0');
  auto p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_X509(certificate, &p) != size) return "";
  return der;
}

std::string serial_hex(const X509* certificate) {
  BignumPtr number(ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr));
  if (!number) return "";
  char* hex = BN_bn2hex(number.get());
  if (hex == nullptr) return "";
  std::string out(hex);
  OPENSSL_free(hex);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int refuse_password(char*, int, int, void* asked) {
  if (asked != nullptr) *static_cast<bool*>(asked) = true;
  return -1;
}

}  // namespace mp::certs::detail
