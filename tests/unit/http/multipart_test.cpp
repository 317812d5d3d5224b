// Tests of src/http/multipart: bodies as curl and Chromium send them, byte-exact binary data,
// near-miss boundaries, every refusal, and a password that never reaches an error message.
#include "http/multipart.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mp::http {
namespace {

using namespace std::string_literals;

// Distinctive enough that any fragment of it in a message is a leak, not a coincidence.
const std::string kPassword = "Pw#9xQ!vorpal-Jabberwock-77";
const std::vector<std::string> kPasswordFragments = {kPassword, "vorpal", "Jabberwock", "Pw#9xQ"};

constexpr std::string_view kCurlBoundary = "------------------------cc0a25a70b881d81";
constexpr std::string_view kChromeBoundary = "----WebKitFormBoundaryq3Zk7Tn0XbL2mWcA";

std::string content_type_for(std::string_view boundary) {
  return "multipart/form-data; boundary=" + std::string(boundary);
}

// A .p12-looking blob (DER starts 30 82) holding the bytes a naive parser trips on.
std::string certificate_bytes() {
  std::string der = "\x30\x82\x0a\x1f\x02\x01\x03\x30\x82\x09\xe5"s;
  der += "\r\n--\0\r\r\n\n-- \xff\xfe"s;
  for (int i = 0; i < 64; ++i) der += static_cast<char>((i * 37 + 11) & 0xFF);
  return der;
}

// Builds a body part by part, the way curl and browsers lay them out.
class BodyBuilder {
 public:
  explicit BodyBuilder(std::string_view boundary) : boundary_(boundary) {}
  BodyBuilder& field(std::string_view name, std::string_view value) {
    return raw_part("Content-Disposition: form-data; name=\"" + std::string(name) + "\"\r\n",
                    value);
  }
  BodyBuilder& file(std::string_view name, std::string_view filename, std::string_view type,
                    std::string_view data) {
    return raw_part("Content-Disposition: form-data; name=\"" + std::string(name) +
                        "\"; filename=\"" + std::string(filename) +
                        "\"\r\nContent-Type: " + std::string(type) + "\r\n",
                    data);
  }
  // `headers`: the header lines, each with its CRLF; the blank line is added here.
  BodyBuilder& raw_part(std::string_view headers, std::string_view data) {
    body_ += "--" + boundary_ + "\r\n" + std::string(headers) + "\r\n" + std::string(data) + "\r\n";
    return *this;
  }
  std::string close() const { return body_ + "--" + boundary_ + "--\r\n"; }
  std::string open() const { return body_; }  // no close delimiter: a truncated upload

 private:
  std::string boundary_;
  std::string body_;
};

std::vector<FormPart> parse_ok(std::string_view content_type, std::string_view body,
                               const MultipartLimits& limits = {}) {
  auto parsed = parse_multipart(content_type, body, limits);
  if (!parsed) {
    ADD_FAILURE() << "refused: " << parsed.error().message;
    return {};
  }
  return std::move(parsed).value();
}

// The value of field `name`, or a marker that fails any comparison with real data.
std::string value_of(const std::vector<FormPart>& parts, std::string_view name) {
  const FormPart* part = find_part(parts, name);
  return part ? part->data : "<missing " + std::string(name) + ">";
}

TEST(Multipart, ParsesWhatCurlSends) {
  // Captured from `curl -F certificate=@x.p12 -F app_id=com.example.mail` (curl 7.88.1); only
  // the file's bytes differ.
  const std::string cert = certificate_bytes();
  const std::string body =
      "--------------------------cc0a25a70b881d81\r\n"
      "Content-Disposition: form-data; name=\"certificate\"; filename=\"x.p12\"\r\n"
      "Content-Type: application/octet-stream\r\n"
      "\r\n" +
      cert +
      "\r\n"
      "--------------------------cc0a25a70b881d81\r\n"
      "Content-Disposition: form-data; name=\"app_id\"\r\n"
      "\r\n"
      "com.example.mail\r\n"
      "--------------------------cc0a25a70b881d81--\r\n";
  const auto parts =
      parse_ok("multipart/form-data; boundary=------------------------cc0a25a70b881d81", body);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "certificate");
  EXPECT_EQ(parts[0].filename, "x.p12");
  EXPECT_EQ(parts[0].content_type, "application/octet-stream");
  EXPECT_EQ(parts[0].data, cert);
  EXPECT_EQ(parts[1].name, "app_id");
  EXPECT_EQ(parts[1].filename, std::nullopt);
  EXPECT_EQ(parts[1].content_type, "text/plain");  // RFC 7578's default
  EXPECT_EQ(parts[1].data, "com.example.mail");
}

TEST(Multipart, ParsesWhatChromiumSends) {
  const std::string cert = certificate_bytes();
  const std::string b = "------WebKitFormBoundaryq3Zk7Tn0XbL2mWcA";
  const std::string body = b +
                           "\r\n"
                           "Content-Disposition: form-data; name=\"app_id\"\r\n\r\n"
                           "com.example.mail\r\n" +
                           b +
                           "\r\n"
                           "Content-Disposition: form-data; name=\"region\"\r\n\r\n"
                           "eu-west-1\r\n" +
                           b +
                           "\r\n"
                           "Content-Disposition: form-data; name=\"password\"\r\n\r\n" +
                           kPassword + "\r\n" + b +
                           "\r\n"
                           "Content-Disposition: form-data; name=\"invite_code\"\r\n\r\n"
                           "INV-2Q8R-77KD\r\n" +
                           b +
                           "\r\n"
                           "Content-Disposition: form-data; name=\"environment\"\r\n\r\n"
                           "production\r\n" +
                           b +
                           "\r\n"
                           "Content-Disposition: form-data; name=\"certificate\"; "
                           "filename=\"Push Cert (prod).p12\"\r\n"
                           "Content-Type: application/x-pkcs12\r\n\r\n" +
                           cert + "\r\n" + b + "--\r\n";
  const auto parts = parse_ok(content_type_for(kChromeBoundary), body);
  ASSERT_EQ(parts.size(), 6u);
  EXPECT_EQ(value_of(parts, "app_id"), "com.example.mail");
  EXPECT_EQ(value_of(parts, "region"), "eu-west-1");
  EXPECT_EQ(value_of(parts, "password"), kPassword);
  EXPECT_EQ(value_of(parts, "invite_code"), "INV-2Q8R-77KD");
  EXPECT_EQ(value_of(parts, "environment"), "production");
  const FormPart* certificate = find_part(parts, "certificate");
  ASSERT_NE(certificate, nullptr);
  EXPECT_EQ(certificate->filename, "Push Cert (prod).p12");
  EXPECT_EQ(certificate->content_type, "application/x-pkcs12");
  EXPECT_EQ(certificate->data, cert);
  EXPECT_EQ(find_part(parts, "Certificate"), nullptr);  // names are case-sensitive
  EXPECT_EQ(find_part(parts, "missing"), nullptr);
}

TEST(Multipart, BinaryDataComesThroughByteExact) {
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  const std::string b(kCurlBoundary);
  const std::vector<std::string> payloads = {
      all_bytes,
      all_bytes + all_bytes,
      all_bytes + "\r",  // ends in CR: the delimiter's CRLF follows it
      all_bytes + "--",
      all_bytes + "\r\n",
      all_bytes + "\r\n--",
      all_bytes + "\r\n\r\n",
      "\r\n" + all_bytes,
      // The boundary without the CRLF before it is data. (Not at the very start: there the
      // blank line's CRLF precedes it, and RFC 2046 makes that a delimiter.)
      "x--" + b + "--",
      "x--" + b + "\r\n",
      "\r",
      "\n",
      "-",
      "\0"s,
      "",
  };
  for (const std::string& data : payloads) {
    SCOPED_TRACE("payload of " + std::to_string(data.size()) + " bytes");
    const std::string body = BodyBuilder(b)
                                 .file("certificate", "x.p12", "application/octet-stream", data)
                                 .field("app_id", "com.example.mail")
                                 .close();
    const auto parts = parse_ok(content_type_for(b), body);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0].data, data);
    EXPECT_EQ(parts[0].data.size(), data.size());
    EXPECT_EQ(parts[1].data, "com.example.mail");
  }
}

TEST(Multipart, NearMissBoundariesAreData) {
  const std::string b = "AaB03x";
  const std::vector<std::string> payloads = {
      "x\r\n--AaB03",        // one byte short
      "x\r\n--AaB03y\r\n",   // last byte differs
      "x\r\n--AAB03X\r\n",   // boundaries compare case-sensitively
      "x\r\n--AaB03xy\r\n",  // a longer boundary is a different one
      "x\r\n--AaB03x-y",     // a single '-' after it is not a close delimiter
      "x\r\n--AaB03x_",
      "x\r--AaB03x\r\n",   // CR without LF
      "x\n--AaB03x\r\n",   // LF without CR
      "x\r\n-AaB03x\r\n",  // one dash
      "x--AaB03x\r\n",      "x\r\n\r\n--AaB03xz--",
  };
  for (const std::string& data : payloads) {
    SCOPED_TRACE(testing::PrintToString(data));
    const std::string body = BodyBuilder(b).field("blob", data).field("after", "tail").close();
    const auto parts = parse_ok(content_type_for(b), body);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0].data, data);
    EXPECT_EQ(parts[1].data, "tail");
  }
}

// A hostile body must not cost more than a pass over it: 1 MiB of almost-delimiters (each one
// matching all but the last byte, or all bytes and then failing the byte after) parses whole.
// A quadratic scan would make this test time out rather than fail an assertion on a clock.
TEST(Multipart, MegabyteOfNearMissesParsesWhole) {
  const std::string b(kCurlBoundary);
  const std::string short_by_one = "\r\n--" + b.substr(0, b.size() - 1) + "!";
  const std::string longer_by_one = "\r\n--" + b + "x";
  for (const std::string& unit : {short_by_one, longer_by_one, "\r\r\r\r\r\r\r\n"s}) {
    std::string data;
    while (data.size() < 1024 * 1024) data += unit;
    const std::string body = BodyBuilder(b)
                                 .file("certificate", "x.p12", "application/octet-stream", data)
                                 .field("app_id", "com.example.mail")
                                 .close();
    MultipartLimits limits;
    limits.max_part_bytes = 2 * 1024 * 1024;
    const auto parts = parse_ok(content_type_for(b), body, limits);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_TRUE(parts[0].data == data);  // not EXPECT_EQ: a failure would print 1 MiB
    EXPECT_EQ(parts[1].data, "com.example.mail");
  }
}

TEST(Multipart, FieldValuesComeThroughVerbatim) {
  const std::vector<std::string> values = {
      "Robert'); DROP TABLE customers;--",
      "' OR '1'='1' /*",
      "Zürich – 東京 – Ελλάδα – 🚀",
      "quotes \" and 'single' and back\\slash",
      "<script>alert(1)</script> %00 %0d%0a ${jndi:ldap://x}",
      "  leading and trailing spaces  ",
      "line one\r\nline two\nline three",
      "",
  };
  const std::string b(kChromeBoundary);
  BodyBuilder builder(b);
  for (std::size_t i = 0; i < values.size(); ++i) builder.field("f" + std::to_string(i), values[i]);
  const auto parts = parse_ok(content_type_for(b), builder.close());
  ASSERT_EQ(parts.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(parts[i].name, "f" + std::to_string(i));
    EXPECT_EQ(parts[i].data, values[i]);
  }
}

TEST(Multipart, ReadsDispositionParametersQuotedOrNot) {
  const std::string b = "xyz";
  const std::string body =
      BodyBuilder(b)
          .raw_part("content-disposition: FORM-DATA; NAME=app_id\r\n", "a")
          .raw_part("Content-Disposition:form-data;name = \"a\\\"b\\\\c\"\r\n", "b")
          .raw_part(
              "CONTENT-DISPOSITION: form-data; name=\"certificate\"; "
              "filename=\"C:\\fakepath\\x.p12\"\r\ncontent-type: application/x-pkcs12\r\n",
              "c")
          .raw_part("Content-Disposition: form-data; name=\"semi;colon\"; filename=\"\"\r\n", "d")
          .raw_part(
              "Content-Disposition: form-data; name=\"ünï\"; unknown=1;\r\n"
              "X-Ignored: anything\r\n",
              "e")
          .close();
  const auto parts = parse_ok(content_type_for(b), body);
  ASSERT_EQ(parts.size(), 5u);
  EXPECT_EQ(parts[0].name, "app_id");
  EXPECT_EQ(parts[1].name, "a\"b\\c");
  EXPECT_EQ(parts[2].name, "certificate");
  EXPECT_EQ(parts[2].filename, "C:\\fakepath\\x.p12");  // browsers do not escape backslashes
  EXPECT_EQ(parts[2].content_type, "application/x-pkcs12");
  EXPECT_EQ(parts[3].name, "semi;colon");
  EXPECT_EQ(parts[3].filename, "");  // an empty file input: present, empty
  EXPECT_EQ(parts[4].name, "ünï");
  EXPECT_EQ(parts[4].data, "e");
}

TEST(Multipart, FilenameStarIsNotFilename) {
  const std::string b = "xyz";
  const std::string body = BodyBuilder(b)
                               .raw_part(
                                   "Content-Disposition: form-data; name=\"only_star\"; "
                                   "filename*=UTF-8''push%20cert.p12\r\n",
                                   "1")
                               .raw_part(
                                   "Content-Disposition: form-data; name=\"both\"; "
                                   "filename*=UTF-8''star.p12; filename=\"plain.p12\"\r\n",
                                   "2")
                               .close();
  const auto parts = parse_ok(content_type_for(b), body);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].filename, std::nullopt);
  EXPECT_EQ(parts[1].filename, "plain.p12");
}

TEST(Multipart, AcceptsTheBoundaryQuotedOrNotAndEveryAllowedCharacter) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"MULTIPART/Form-Data; BOUNDARY=simple", "simple"},
      {"multipart/form-data ; charset=utf-8; boundary=\"simple\"", "simple"},
      {"multipart/form-data;boundary=\"with spaces inside\"", "with spaces inside"},
      {"multipart/form-data; boundary=\"'()+_,-./:=?\"", "'()+_,-./:=?"},
      {"multipart/form-data; boundary=" + std::string(70, 'b'), std::string(70, 'b')},
      {"multipart/form-data; boundary=x", "x"},
  };
  for (const auto& [content_type, boundary] : cases) {
    SCOPED_TRACE(content_type);
    const auto parts =
        parse_ok(content_type, BodyBuilder(boundary).field("app_id", "com.example").close());
    ASSERT_EQ(parts.size(), 1u);
    EXPECT_EQ(parts[0].data, "com.example");
  }
}

TEST(Multipart, IgnoresPreambleEpilogueAndPaddingAfterDelimiters) {
  const std::string body =
      "This is a preamble.\r\n--not-it\r\n\r\n"
      "--b \t\r\n"
      "Content-Disposition: form-data; name=\"app_id\"\r\n\r\ncom.example\r\n"
      "--b--  \r\n"
      "this is the epilogue --b\r\n--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n";
  const auto parts = parse_ok("multipart/form-data; boundary=b", body);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "com.example");
  // The close delimiter may also end the body without a CRLF.
  EXPECT_EQ(parse_ok("multipart/form-data; boundary=b",
                     "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--")
                .size(),
            1u);
}

TEST(Multipart, AcceptsEmptyPartsAndAnEmptyForm) {
  // RFC 2046 lets the body be absent: the blank line's CRLF is then the delimiter's.
  const auto parts = parse_ok("multipart/form-data; boundary=b",
                              "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--b\r\n"
                              "Content-Disposition: form-data; name=\"c\"\r\n\r\n\r\n--b--\r\n");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].data, "");
  EXPECT_EQ(parts[1].data, "");
  // What a browser sends for a form without fields.
  auto empty = parse_multipart("multipart/form-data; boundary=b", "--b--\r\n");
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_TRUE(empty->empty());
}

TEST(Multipart, LimitsAreInclusive) {
  MultipartLimits limits;
  limits.max_parts = 2;
  limits.max_part_bytes = 10;
  limits.max_name_bytes = 6;
  const std::string headers = "Content-Disposition: form-data; name=\"sixsix\"\r\n";
  limits.max_header_bytes = headers.size() + 2;  // the blank line counts
  const auto parts =
      parse_ok("multipart/form-data; boundary=b",
               BodyBuilder("b").raw_part(headers, "0123456789").field("two", "").close(), limits);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].data, "0123456789");
}

struct RefusalCase {
  std::string name;
  std::string content_type;
  std::string body;
  std::string says;  // a phrase the message must hold
  MultipartLimits limits{};
};

// Every body starts with the password field, so that a message quoting the body would show it.
BodyBuilder with_password(std::string_view boundary = "b") {
  BodyBuilder builder(boundary);
  builder.field("password", kPassword);
  return builder;
}

const std::string kCt = "multipart/form-data; boundary=b";

std::vector<RefusalCase> refusal_cases() {
  const std::string good = with_password().field("app_id", "com.example").close();
  MultipartLimits three_parts;
  three_parts.max_parts = 3;
  MultipartLimits small_parts;
  small_parts.max_part_bytes = kPassword.size() - 1;
  MultipartLimits small_headers;
  small_headers.max_header_bytes = 64;
  return {
      {"text/plain", "text/plain", good, "must be multipart/form-data"},
      {"multipart/mixed", "multipart/mixed; boundary=b", good, "must be multipart/form-data"},
      {"urlencoded", "application/x-www-form-urlencoded", "password=" + kPassword,
       "must be multipart/form-data"},
      {"empty content type", "", good, "must be multipart/form-data"},
      {"no boundary", "multipart/form-data", good, "no boundary parameter"},
      {"other parameter only", "multipart/form-data; charset=utf-8", good, "no boundary parameter"},
      {"empty boundary", "multipart/form-data; boundary=\"\"", good, "1 to 70"},
      {"71 characters", "multipart/form-data; boundary=" + std::string(71, 'b'), good, "1 to 70"},
      {"forbidden character", "multipart/form-data; boundary=a<b", good, "1 to 70"},
      {"quoted forbidden character", "multipart/form-data; boundary=\"a@b\"", good, "1 to 70"},
      {"trailing space", "multipart/form-data; boundary=\"b \"", good, "must not end with a space"},
      {"boundary twice", "multipart/form-data; boundary=b; boundary=c", good,
       "same parameter twice"},
      {"unterminated quote", "multipart/form-data; boundary=\"b", good, "closing quote"},
      {"parameter without value", "multipart/form-data; boundary", good, "without a value"},
      {"no separator", "multipart/form-data; boundary=b x=y", good, "';' should separate"},
      {"other boundary in body", "multipart/form-data; boundary=c", good,
       "no opening boundary delimiter"},
      {"empty body", kCt, "", "no opening boundary delimiter"},
      {"no close delimiter", kCt, with_password().field("app_id", "x").open(), "truncated"},
      {"cut after delimiter", kCt, with_password().open() + "--b", "truncated"},
      {"cut inside headers", kCt, with_password().open() + "--b\r\nContent-Disposition: form",
       "ends inside the headers of part 2"},
      {"no disposition", kCt, with_password().raw_part("Content-Type: text/plain\r\n", "x").close(),
       "part 2 has no Content-Disposition"},
      {"no headers", kCt, with_password().raw_part("", "x").close(),
       "part 2 has no Content-Disposition"},
      {"attachment", kCt,
       with_password().raw_part("Content-Disposition: attachment; name=\"a\"\r\n", "x").close(),
       "must be form-data"},
      {"no name", kCt,
       with_password().raw_part("Content-Disposition: form-data; filename=\"a\"\r\n", "x").close(),
       "has no name parameter"},
      {"empty name", kCt,
       with_password().raw_part("Content-Disposition: form-data; name=\"\"\r\n", "x").close(),
       "part 2 has an empty name"},
      {"long name", kCt, with_password().field(std::string(129, 'n'), "x").close(),
       "longer than 128 bytes"},
      {"duplicate field", kCt, with_password().field("app_id", "a").field("app_id", "b").close(),
       "field 'app_id' appears more than once"},
      {"duplicate password", kCt, with_password().field("password", kPassword + "2").close(),
       "field 'password' appears more than once"},
      {"too many parts", kCt,
       with_password().field("a", "1").field("b", "2").field("c", "3").close(), "more than 3 parts",
       three_parts},
      {"part too large", kCt, with_password().close(), "field 'password' is larger than",
       small_parts},
      {"part too large, no end", kCt, with_password().open(), "field 'password' is larger than",
       small_parts},
      {"headers too large", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\"\r\nX-Pad: " +
                         std::string(64, 'p') + "\r\n",
                     "x")
           .close(),
       "headers of part 2 are longer than 64 bytes", small_headers},
      {"LF-only lines", kCt,
       "--b\nContent-Disposition: form-data; name=\"password\"\n\n" + kPassword + "\n--b--\n",
       "lines must end with CRLF"},
      {"LF-only after a preamble", kCt,
       "preamble\n--b\nContent-Disposition: form-data; name=\"password\"\n\n" + kPassword +
           "\n--b--\n",
       "lines must end with CRLF"},
      {"LF-only header", kCt,
       with_password().open() + "--b\r\nContent-Disposition: form-data; name=\"a\"\n\r\nx\r\n--b--",
       "lines must end with CRLF"},
      {"CR-only header", kCt,
       with_password().open() + "--b\r\nContent-Disposition: form-data; name=\"a\"\rX: y\r\n\r\n" +
           "x\r\n--b--",
       "lines must end with CRLF"},
      {"LF after delimiter", kCt, with_password().open() + "--b\nContent-Disposition: x\r\n",
       "lines must end with CRLF"},
      {"LF after close delimiter", kCt, with_password().open() + "--b--\nepilogue",
       "lines must end with CRLF"},
      {"bytes after close delimiter", kCt, with_password().open() + "--b--" + kPassword,
       "closing boundary delimiter"},
      {"bytes after delimiter", kCt, with_password().open() + "--b \tjunk\r\n",
       "bytes after the boundary"},
      {"folded header", kCt,
       with_password().raw_part("Content-Disposition: form-data;\r\n name=\"a\"\r\n", "x").close(),
       "folded header line"},
      {"control character", kCt,
       with_password().raw_part("Content-Disposition: form-data; name=\"a\x01\"\r\n", "x").close(),
       "control character"},
      {"base64 transfer encoding", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"certificate\"\r\n"
                     "Content-Transfer-Encoding: base64\r\n",
                     "MIIK")
           .close(),
       "Content-Transfer-Encoding"},
      {"two dispositions", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\"\r\n"
                     "Content-Disposition: form-data; name=\"b\"\r\n",
                     "x")
           .close(),
       "more than one Content-Disposition"},
      {"two content types", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\"\r\nContent-Type: " + kPassword +
                         "\r\nContent-Type: text/plain\r\n",
                     "x")
           .close(),
       "more than one Content-Type"},
      {"empty content type header", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\"\r\nContent-Type:  \r\n", "x")
           .close(),
       "empty Content-Type"},
      {"header without colon", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\"\r\n" + kPassword + "\r\n", "x")
           .close(),
       "not \"Name: value\""},
      {"header name with space", kCt,
       with_password().raw_part("Content Disposition: form-data; name=\"a\"\r\n", "x").close(),
       "not \"Name: value\""},
      {"unterminated quoted filename", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\"; filename=\"" + kPassword + "\r\n",
                     "x")
           .close(),
       "closing quote"},
      {"name twice", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\"; NAME=\"b\"\r\n", "x")
           .close(),
       "same parameter twice"},
      {"junk between parameters", kCt,
       with_password()
           .raw_part("Content-Disposition: form-data; name=\"a\" " + kPassword + "\r\n", "x")
           .close(),
       "';' should separate parameters"},
  };
}

TEST(Multipart, RefusesWithAReasonThatNeverQuotesAValue) {
  // The same bodies with a valid content type and boundary parse: each refusal is the fault named.
  ASSERT_TRUE(parse_multipart(kCt, with_password().field("app_id", "x").close()));
  for (const RefusalCase& c : refusal_cases()) {
    SCOPED_TRACE(c.name);
    const auto parsed = parse_multipart(c.content_type, c.body, c.limits);
    ASSERT_FALSE(parsed);
    const Error& error = parsed.error();
    EXPECT_EQ(error.code, Errc::invalid_argument);
    EXPECT_NE(error.message.find(c.says), std::string::npos) << error.message;
    for (const std::string& fragment : kPasswordFragments) {
      EXPECT_EQ(error.message.find(fragment), std::string::npos) << "leaks the password";
    }
    for (const char ch : error.message) {
      EXPECT_TRUE(ch >= 0x20 && ch < 0x7F) << "not printable ASCII: " << int(ch);
    }
  }
}

TEST(Multipart, NamesAFieldOnlyWhenItsNameIsPrintable) {
  const std::string body = BodyBuilder("b").field("bad\x1bname", "1").close();
  // The control byte is refused in the header; a quote in a name is named by position instead.
  const auto control = parse_multipart(kCt, body);
  ASSERT_FALSE(control);
  EXPECT_EQ(control.error().message.find('\x1b'), std::string::npos);
  const std::string quoted = BodyBuilder("b")
                                 .raw_part("Content-Disposition: form-data; name=\"it's\"\r\n", "1")
                                 .raw_part("Content-Disposition: form-data; name=\"it's\"\r\n", "2")
                                 .close();
  const auto duplicate = parse_multipart(kCt, quoted);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().message, "part 2 appears more than once in the form");
}

}  // namespace
}  // namespace mp::http
