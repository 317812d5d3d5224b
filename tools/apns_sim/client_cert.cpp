// Reads Apple's push-certificate facts out of an X509 with OpenSSL.
#include "client_cert.hpp"

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "common/openssl_handles.hpp"

namespace apns_sim {
namespace {

constexpr const char* kOidDevelopment = "1.2.840.113635.100.6.3.1";
constexpr const char* kOidProduction = "1.2.840.113635.100.6.3.2";
constexpr const char* kOidTopics = "1.2.840.113635.100.6.3.6";

X509_EXTENSION* find_extension(X509* cert, const char* oid) {
  const mp::AsnObjectPtr obj(OBJ_txt2obj(oid, 1));
  if (!obj) return nullptr;
  const int index = X509_get_ext_by_OBJ(cert, obj.get(), -1);
  return index < 0 ? nullptr : X509_get_ext(cert, index);
}

std::string utf8(const ASN1_STRING* s) {
  unsigned char* raw = nullptr;
  const int n = ASN1_STRING_to_UTF8(&raw, s);
  if (n < 0) return "";
  const mp::OpensslPtr<unsigned char> owned(raw);
  return std::string(reinterpret_cast<const char*>(raw), static_cast<std::size_t>(n));
}

std::vector<std::string> read_topics(X509_EXTENSION* ext) {
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
  const unsigned char* p = ASN1_STRING_get0_data(data);
  const mp::AsnSequencePtr seq(d2i_ASN1_SEQUENCE_ANY(nullptr, &p, ASN1_STRING_length(data)));
  std::vector<std::string> topics;
  if (!seq) return topics;
  for (int i = 0; i < sk_ASN1_TYPE_num(seq.get()); ++i) {
    const ASN1_TYPE* item = sk_ASN1_TYPE_value(seq.get(), i);
    // Each topic is followed by a SEQUENCE naming its kind ("app", "voip"...): skipped.
    if (ASN1_TYPE_get(item) == V_ASN1_UTF8STRING) topics.push_back(utf8(item->value.utf8string));
  }
  return topics;
}

}  // namespace

std::vector<std::string> ClientCertFacts::allowed_topics() const {
  if (has_topic_extension) return topic_extension;
  if (!uid.empty()) return {uid};
  return {};
}

ClientCertFacts read_client_cert(X509* cert) {
  ClientCertFacts facts;
  const X509_NAME* name = X509_get_subject_name(cert);
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    const int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
    const std::string value = utf8(X509_NAME_ENTRY_get_data(entry));
    if (!facts.subject.empty()) facts.subject += ", ";
    const char* short_name = nid == NID_undef ? "?" : OBJ_nid2sn(nid);
    facts.subject += std::string(short_name) + "=" + value;
    if (nid == NID_userId) facts.uid = value;
  }

  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &md_len) == 1) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < md_len; ++i) {
      facts.sha256_hex.push_back(kHex[md[i] >> 4]);
      facts.sha256_hex.push_back(kHex[md[i] & 0xf]);
    }
  }

  facts.development = find_extension(cert, kOidDevelopment) != nullptr;
  facts.production = find_extension(cert, kOidProduction) != nullptr;
  if (X509_EXTENSION* topics = find_extension(cert, kOidTopics)) {
    facts.has_topic_extension = true;
    facts.topic_extension = read_topics(topics);
  }
  return facts;
}

}  // namespace apns_sim
