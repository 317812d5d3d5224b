// Apple push certificate checks on an opened certificate + key, and the two entry points.
#include "certs/push_certificate.hpp"

#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <cctype>
#include <cstdio>
#include <ctime>
#include <optional>
#include <utility>

#include "certs/pkcs12_reader.hpp"
#include "certs/x509_fields.hpp"
#include "common/crypto.hpp"
#include "common/openssl_handles.hpp"

namespace mp::certs {

const char* refusal_name(Refusal reason) noexcept {
  switch (reason) {
    case Refusal::not_pkcs12:
      return "not_pkcs12";
    case Refusal::wrong_password:
      return "wrong_password";
    case Refusal::no_certificate:
      return "no_certificate";
    case Refusal::no_private_key:
      return "no_private_key";
    case Refusal::key_mismatch:
      return "key_mismatch";
    case Refusal::not_apple_push:
      return "not_apple_push";
    case Refusal::topic_mismatch:
      return "topic_mismatch";
    case Refusal::expired:
      return "expired";
    case Refusal::not_yet_valid:
      return "not_yet_valid";
    case Refusal::unknown_issuer:
      return "unknown_issuer";
    case Refusal::too_large:
      return "too_large";
  }
  return "unknown";
}

namespace {

using namespace detail;
using Clock = std::chrono::system_clock;

constexpr const char* kOidDevelopment = "1.2.840.113635.100.6.3.1";
constexpr const char* kOidProduction = "1.2.840.113635.100.6.3.2";
constexpr const char* kOidTopics = "1.2.840.113635.100.6.3.6";
constexpr const char* kCreateNew =
    "create an Apple Push Notification service certificate for the app in the Apple Developer "
    "portal (Certificates, Identifiers & Profiles), export it with its key from Keychain Access "
    "and upload that .p12";

std::string utf8(const ASN1_STRING* value) {
  unsigned char* out = nullptr;
  const int size = ASN1_STRING_to_UTF8(&out, value);
  if (size < 0) return "";
  std::string text(reinterpret_cast<char*>(out), static_cast<std::size_t>(size));
  OPENSSL_free(out);
  return text;
}

std::string subject_uid(const X509* certificate) {
  const X509_NAME* subject = X509_get_subject_name(certificate);
  const int index = X509_NAME_get_index_by_NID(subject, NID_userId, -1);
  if (index < 0) return "";
  return utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
}

const ASN1_OCTET_STRING* extension_data(const X509* certificate, const char* oid) {
  AsnObjectPtr object(OBJ_txt2obj(oid, 1));
  if (!object) return nullptr;
  const int index = X509_get_ext_by_OBJ(certificate, object.get(), -1);
  if (index < 0) return nullptr;
  return X509_EXTENSION_get_data(X509_get_ext(certificate, index));
}

struct Topic {
  std::string name;
  std::vector<std::string> kinds;  // "app", "voip", "complication", ...
};

AsnSequencePtr read_sequence(const unsigned char* der, long size) {
  const unsigned char* p = der;
  AsnSequencePtr sequence(d2i_ASN1_SEQUENCE_ANY(nullptr, &p, size));
  if (sequence && p != der + size) sequence.reset();  // trailing bytes: not the format
  return sequence;
}

// The topics extension: SEQUENCE { UTF8String topic, SEQUENCE { UTF8String kind... }, ... }.
std::optional<std::vector<Topic>> parse_topics(const ASN1_OCTET_STRING* data) {
  const AsnSequencePtr sequence =
      read_sequence(ASN1_STRING_get0_data(data), ASN1_STRING_length(data));
  if (!sequence) return std::nullopt;
  std::vector<Topic> topics;
  for (int i = 0; i < sk_ASN1_TYPE_num(sequence.get()); ++i) {
    const ASN1_TYPE* item = sk_ASN1_TYPE_value(sequence.get(), i);
    if (item->type == V_ASN1_UTF8STRING) {
      std::string name = utf8(item->value.utf8string);
      if (name.empty()) return std::nullopt;
      topics.push_back(Topic{std::move(name), {}});
    } else if (item->type == V_ASN1_SEQUENCE && !topics.empty()) {
      const AsnSequencePtr kinds = read_sequence(ASN1_STRING_get0_data(item->value.sequence),
                                                 ASN1_STRING_length(item->value.sequence));
      if (!kinds) return std::nullopt;
      for (int k = 0; k < sk_ASN1_TYPE_num(kinds.get()); ++k) {
        const ASN1_TYPE* kind = sk_ASN1_TYPE_value(kinds.get(), k);
        if (kind->type != V_ASN1_UTF8STRING) return std::nullopt;
        topics.back().kinds.push_back(utf8(kind->value.utf8string));
      }
    } else {
      return std::nullopt;
    }
  }
  return topics;
}

std::optional<SecretBytes> pkcs8_of(const EVP_PKEY* key) {
  Pkcs8Ptr p8(EVP_PKEY2PKCS8(key));
  if (!p8) return std::nullopt;
  const int size = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), nullptr);
  if (size <= 0) return std::nullopt;
  SecretBytes out(static_cast<std::size_t>(size));
  unsigned char* p = out.data();
  if (i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &p) != size) return std::nullopt;
  return out;
}

std::optional<Refused> verify_issuer(X509* leaf, const std::vector<X509*>& chain,
                                     const InspectOptions& options) {
  X509StorePtr store(X509_STORE_new());
  if (!store) return Refused{Refusal::unknown_issuer, "cannot check the issuer (out of memory)"};
  int anchors = 0;
  for (const std::string& pem : options.trust_anchors_pem) {
    BioPtr bio = memory_bio(pem);
    while (X509* anchor = PEM_read_bio_X509(bio.get(), nullptr, refuse_password, nullptr)) {
      X509Ptr owned(anchor);
      if (X509_STORE_add_cert(store.get(), anchor) == 1) ++anchors;
    }
  }
  if (anchors == 0) {
    return Refused{Refusal::unknown_issuer,
                   "this server has no Apple push CA certificate to check certificates against: "
                   "an operator must configure the trust anchors"};
  }
  // Times are checked by the caller against `now`, so each gets its own reason. A partial chain
  // lets an intermediate (Apple's WWDR CA) be the anchor, as operators usually configure it.
  X509_VERIFY_PARAM_set_flags(X509_STORE_get0_param(store.get()),
                              X509_V_FLAG_NO_CHECK_TIME | X509_V_FLAG_PARTIAL_CHAIN);
  X509StackPtr untrusted(sk_X509_new_null());
  if (!untrusted)
    return Refused{Refusal::unknown_issuer, "cannot check the issuer (out of memory)"};
  for (X509* c : chain) sk_X509_push(untrusted.get(), c);
  X509StoreCtxPtr context(X509_STORE_CTX_new());
  if (!context || X509_STORE_CTX_init(context.get(), store.get(), leaf, untrusted.get()) != 1) {
    return Refused{Refusal::unknown_issuer, "cannot check the issuer (out of memory)"};
  }
  if (X509_verify_cert(context.get()) == 1) return std::nullopt;
  const int error = X509_STORE_CTX_get_error(context.get());
  const std::string issuer = rfc2253(X509_get_issuer_name(leaf));
  switch (error) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return Refused{Refusal::unknown_issuer, "the certificate is signed by " + printable(issuer) +
                                                  ", which is not Apple's push CA: " + kCreateNew};
    default:
      return Refused{Refusal::unknown_issuer,
                     std::string("the certificate does not verify against Apple's push CA (") +
                         X509_verify_cert_error_string(error) + "): " + kCreateNew};
  }
}

// Every check after the key is known to match, in the order of Refusal.
InspectResult check_push_certificate(X509* leaf, const EVP_PKEY* key,
                                     const std::vector<X509*>& chain,
                                     const InspectOptions& options) {
  PushCertificate out;
  out.subject = rfc2253(X509_get_subject_name(leaf));
  out.issuer = rfc2253(X509_get_issuer_name(leaf));
  const std::string who = "the certificate " + printable(out.subject);

  out.topic = subject_uid(leaf);
  out.development = extension_data(leaf, kOidDevelopment) != nullptr;
  out.production = extension_data(leaf, kOidProduction) != nullptr;
  if (out.topic.empty() || (!out.development && !out.production)) {
    const char* missing = out.topic.empty() ? "no UID (bundle id) in its subject"
                                            : "no APNs development or production extension";
    return Refused{Refusal::not_apple_push,
                   who + " is not an Apple push certificate (" + missing + "): " + kCreateNew};
  }

  bool app_topic = false;
  if (const ASN1_OCTET_STRING* data = extension_data(leaf, kOidTopics)) {
    const auto topics = parse_topics(data);
    if (!topics) {
      return Refused{Refusal::not_apple_push,
                     who + " has an APNs topics extension that cannot be read: " + kCreateNew};
    }
    for (const Topic& t : *topics) {
      out.topics.push_back(t.name);
      for (const std::string& kind : t.kinds) {
        if (kind == "app" && t.name == options.expected_topic) app_topic = true;
      }
    }
  }
  if (!options.expected_topic.empty() && options.expected_topic != out.topic && !app_topic) {
    return Refused{Refusal::topic_mismatch,
                   "the certificate is for " + printable(out.topic) + ", not the App ID " +
                       printable(options.expected_topic) +
                       ": upload the push certificate made for " +
                       printable(options.expected_topic) + ", or correct the App ID"};
  }

  const auto not_before = certificate_time(X509_get0_notBefore(leaf));
  const auto not_after = certificate_time(X509_get0_notAfter(leaf));
  if (!not_before || !not_after) {
    return Refused{Refusal::not_apple_push,
                   who + " has validity dates that cannot be read: " + kCreateNew};
  }
  out.not_before = not_before->point;
  out.not_after = not_after->point;
  if (options.now > out.not_after) {
    return Refused{Refusal::expired, "the certificate expired on " + utc_text(not_after->parts) +
                                         " (UTC): " + kCreateNew};
  }
  if (options.now < out.not_before) {
    return Refused{Refusal::not_yet_valid,
                   "the certificate is not valid before " + utc_text(not_before->parts) +
                       " (UTC): upload it from that time on, or check this server's clock if "
                       "the date looks wrong"};
  }

  if (auto refused = verify_issuer(leaf, chain, options)) return *refused;

  out.serial_hex = serial_hex(leaf);
  out.certificate_der = der_of(leaf);
  for (X509* c : chain) out.chain_der.push_back(der_of(c));
  auto key_der = pkcs8_of(key);
  if (out.certificate_der.empty() || !key_der) {
    return Refused{Refusal::not_pkcs12,
                   who +
                       " or its key cannot be encoded again: export it again from Keychain "
                       "Access and upload the new .p12"};
  }
  out.private_key_der = std::move(*key_der);
  out.fingerprint_sha256_hex = hex_encode(sha256(out.certificate_der));
  return out;
}

Refused too_large(std::string_view what, std::size_t size, std::size_t limit) {
  return Refused{Refusal::too_large,
                 std::string(what) + " is " + std::to_string(size) + " bytes, more than the " +
                     std::to_string(limit) +
                     " this server accepts; an export of one push certificate with its key is "
                     "a few KiB: export only that certificate and its key"};
}

std::vector<X509*> borrow(const std::vector<X509Ptr>& certificates, const X509* except) {
  std::vector<X509*> out;
  for (const X509Ptr& c : certificates) {
    if (c.get() != except) out.push_back(c.get());
  }
  return out;
}

}  // namespace

InspectResult inspect_p12(std::string_view p12, std::string_view password,
                          const InspectOptions& options) {
  const ErrorQueueScope errors;
  if (p12.size() > options.max_bytes) return too_large("the file", p12.size(), options.max_bytes);
  auto read = read_pkcs12(p12, password);
  if (auto* refused = std::get_if<Refused>(&read)) return std::move(*refused);
  const Pkcs12Contents& contents = std::get<Pkcs12Contents>(read);

  if (contents.certificates.empty()) {
    return Refused{Refusal::no_certificate,
                   "the .p12 file holds no certificate: in Keychain Access select the push "
                   "certificate itself (with its key under it), export it and upload that file"};
  }
  if (contents.keys.empty()) {
    return Refused{Refusal::no_private_key,
                   "the .p12 file holds the certificate but not its private key: in Keychain "
                   "Access (login keychain, My Certificates) export the certificate together "
                   "with the key under it; without the key, export from the Mac that made the "
                   "request, or create a new certificate"};
  }
  // The leaf is the certificate a key in the file belongs to; the rest is its chain.
  for (const EvpPkeyPtr& key : contents.keys) {
    for (const X509Ptr& certificate : contents.certificates) {
      if (X509_check_private_key(certificate.get(), key.get()) == 1) {
        return check_push_certificate(certificate.get(), key.get(),
                                      borrow(contents.certificates, certificate.get()), options);
      }
    }
  }
  return Refused{Refusal::key_mismatch,
                 "the private key in the .p12 file does not belong to its certificate " +
                     printable(rfc2253(X509_get_subject_name(contents.certificates[0].get()))) +
                     ": export the certificate together with its own key"};
}

InspectResult inspect_pem(std::string_view cert_pem, std::string_view key_pem,
                          const InspectOptions& options) {
  const ErrorQueueScope errors;
  if (cert_pem.size() > options.max_bytes) {
    return too_large("the certificate PEM", cert_pem.size(), options.max_bytes);
  }
  if (key_pem.size() > options.max_bytes) {
    return too_large("the key PEM", key_pem.size(), options.max_bytes);
  }
  BioPtr cert_bio = memory_bio(cert_pem);
  X509Ptr leaf(PEM_read_bio_X509(cert_bio.get(), nullptr, refuse_password, nullptr));
  if (!leaf) {
    return Refused{Refusal::no_certificate,
                   "the certificate PEM holds no certificate (-----BEGIN CERTIFICATE-----)"};
  }
  std::vector<X509Ptr> chain;
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, refuse_password, nullptr)) {
    chain.emplace_back(extra);
  }
  BioPtr key_bio = memory_bio(key_pem);
  bool password_asked = false;
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, refuse_password, &password_asked));
  if (!key) {
    return Refused{Refusal::no_private_key,
                   password_asked ? "the private key PEM is encrypted: give the key without a "
                                    "passphrase (openssl pkey -in key.pem -out plain.pem)"
                                  : "the key PEM holds no private key (-----BEGIN PRIVATE "
                                    "KEY-----)"};
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    return Refused{Refusal::key_mismatch,
                   "the private key does not belong to the certificate " +
                       printable(rfc2253(X509_get_subject_name(leaf.get()))) +
                       ": give the key that was made with its certificate request"};
  }
  return check_push_certificate(leaf.get(), key.get(), borrow(chain, nullptr), options);
}

}  // namespace mp::certs
