// PKCS#12 → certificates and keys. We walk the structure ourselves instead of calling
// PKCS12_parse so that each password-hashing step is costed first and each failure has its reason.
#include "certs/pkcs12_reader.hpp"

#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>

#include <optional>
#include <string>

namespace mp::certs::detail {

namespace {

const char* const kExportAgain =
    "export the push certificate with its private key from Keychain Access again (File > "
    "Export Items, format .p12) and upload that file";

Refused damaged(const std::string& what) {
  return Refused{Refusal::not_pkcs12, "the .p12 file is damaged: " + what + ": " + kExportAgain};
}

Refused unreadable_protection(const ASN1_OBJECT* algorithm) {
  char name[128] = "an unknown algorithm";
  if (algorithm != nullptr) OBJ_obj2txt(name, sizeof name, algorithm, 0);
  std::string message = std::string("part of the .p12 file is protected with ") + name +
                        ", which this server cannot read or which does not decrypt";
  if (!load_pkcs12_providers()) {
    message += " (the OpenSSL legacy provider for older Keychain exports is not installed here)";
  }
  return Refused{Refusal::not_pkcs12, message + ": " + kExportAgain};
}

void free_pbe(PBEPARAM* p) {
  PBEPARAM_free(p);
}
void free_pbe2(PBE2PARAM* p) {
  PBE2PARAM_free(p);
}
void free_pbkdf2(PBKDF2PARAM* p) {
  PBKDF2PARAM_free(p);
}
void free_md(EVP_MD* md) {
  EVP_MD_free(md);
}

std::optional<std::int64_t> positive_integer(const ASN1_INTEGER* value) {
  std::int64_t v = 0;
  if (value == nullptr || ASN1_INTEGER_get_int64(&v, value) != 1 || v < 1) return std::nullopt;
  return v;
}

// The DER of an AlgorithmIdentifier's SEQUENCE parameters, or nothing.
std::optional<std::string_view> sequence_parameters(const X509_ALGOR* algorithm,
                                                    const ASN1_OBJECT** oid) {
  int type = 0;
  const void* value = nullptr;
  X509_ALGOR_get0(oid, &type, &value, algorithm);
  if (type != V_ASN1_SEQUENCE || value == nullptr) return std::nullopt;
  const auto* sequence = static_cast<const ASN1_STRING*>(value);
  return std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(sequence)),
                          static_cast<std::size_t>(ASN1_STRING_length(sequence)));
}

template <class T>
T* decode(T* (*d2i)(T**, const unsigned char**, long), std::string_view der) {
  auto p = reinterpret_cast<const unsigned char*>(der.data());
  return d2i(nullptr, &p, static_cast<long>(der.size()));
}

// Rounds of password hashing one decryption with `algorithm` costs: PBES2 with PBKDF2, or a
// PBES1 / PKCS#12 PBE (PBEParameter). Anything else (scrypt, unknown) is not read at all.
std::optional<std::int64_t> pbe_rounds(const X509_ALGOR* algorithm) {
  if (algorithm == nullptr) return std::nullopt;
  const ASN1_OBJECT* oid = nullptr;
  const auto params = sequence_parameters(algorithm, &oid);
  if (!params) return std::nullopt;
  if (OBJ_obj2nid(oid) == NID_pbes2) {
    Owned<PBE2PARAM, free_pbe2> pbe2(decode(d2i_PBE2PARAM, *params));
    if (!pbe2 || pbe2->keyfunc == nullptr) return std::nullopt;
    const ASN1_OBJECT* kdf_oid = nullptr;
    const auto kdf_params = sequence_parameters(pbe2->keyfunc, &kdf_oid);
    if (!kdf_params || OBJ_obj2nid(kdf_oid) != NID_id_pbkdf2) return std::nullopt;
    Owned<PBKDF2PARAM, free_pbkdf2> kdf(decode(d2i_PBKDF2PARAM, *kdf_params));
    if (!kdf) return std::nullopt;
    return positive_integer(kdf->iter);
  }
  Owned<PBEPARAM, free_pbe> pbe(decode(d2i_PBEPARAM, *params));
  if (!pbe) return std::nullopt;
  return positive_integer(pbe->iter);
}

class Walker {
 public:
  explicit Walker(const Pkcs12Limits& limits) : limits_(limits) {}

  // The password as OpenSSL wants it. An empty password is ambiguous in PKCS#12 (no password vs
  // the empty string, which hash differently); the MAC check picks the one that matches.
  void use_password(const char* pass, int length) {
    pass_ = pass;
    pass_length_ = length;
  }
  const char* pass() const { return pass_; }
  int pass_length() const { return pass_length_; }

  std::optional<Refused> charge(std::int64_t rounds) {
    if (rounds > limits_.max_rounds || spent_ + rounds > limits_.max_total_rounds) {
      return Refused{Refusal::too_large,
                     "the .p12 file asks for " + std::to_string(rounds) +
                         " rounds of password hashing, more than the " +
                         std::to_string(limits_.max_rounds) + " (" +
                         std::to_string(limits_.max_total_rounds) +
                         " for the whole file) this server accepts: " + kExportAgain};
    }
    spent_ += rounds;
    return std::nullopt;
  }

  std::optional<Refused> count_item() {
    if (++items_ > limits_.max_items) {
      return Refused{Refusal::not_pkcs12, "the .p12 file holds more than " +
                                              std::to_string(limits_.max_items) +
                                              " items where an export of one push certificate "
                                              "holds a few: " +
                                              kExportAgain};
    }
    return std::nullopt;
  }

  std::optional<Refused> read_part(PKCS7* part) {
    if (auto r = count_item()) return r;
    SafebagsPtr bags;
    switch (OBJ_obj2nid(part->type)) {
      case NID_pkcs7_data:
        if (part->d.data == nullptr) return damaged("a part has no content");
        bags.reset(PKCS12_unpack_p7data(part));
        if (!bags) return damaged("a part cannot be read");
        break;
      case NID_pkcs7_encrypted: {
        if (part->d.encrypted == nullptr || part->d.encrypted->enc_data == nullptr ||
            part->d.encrypted->enc_data->algorithm == nullptr) {
          return damaged("an encrypted part has no content");
        }
        const X509_ALGOR* algorithm = part->d.encrypted->enc_data->algorithm;
        const auto rounds = pbe_rounds(algorithm);
        if (!rounds) return unreadable_protection(algorithm->algorithm);
        if (auto r = charge(*rounds)) return r;
        bags.reset(PKCS12_unpack_p7encdata(part, pass_, pass_length_));
        if (!bags) return unreadable_protection(algorithm->algorithm);
        break;
      }
      default:
        // Public-key privacy mode (enveloped data): Keychain never writes it.
        return Refused{Refusal::not_pkcs12,
                       "part of the .p12 file is encrypted to a public key instead of the "
                       "password: " +
                           std::string(kExportAgain)};
    }
    return read_bags(bags.get(), 0);
  }

  Pkcs12Contents contents;

 private:
  std::optional<Refused> read_bags(const STACK_OF(PKCS12_SAFEBAG) * bags, int depth) {
    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); ++i) {
      if (auto r = read_bag(sk_PKCS12_SAFEBAG_value(bags, i), depth)) return r;
    }
    return std::nullopt;
  }

  std::optional<Refused> read_bag(const PKCS12_SAFEBAG* bag, int depth) {
    if (auto r = count_item()) return r;
    switch (PKCS12_SAFEBAG_get_nid(bag)) {
      case NID_keyBag: {
        const PKCS8_PRIV_KEY_INFO* p8 = PKCS12_SAFEBAG_get0_p8inf(bag);
        if (p8 == nullptr) return damaged("a private key entry is empty");
        return add_key(p8);
      }
      case NID_pkcs8ShroudedKeyBag: {
        const X509_SIG* sealed = PKCS12_SAFEBAG_get0_pkcs8(bag);
        if (sealed == nullptr) return damaged("an encrypted private key entry is empty");
        const X509_ALGOR* algorithm = nullptr;
        X509_SIG_get0(sealed, &algorithm, nullptr);
        const auto rounds = pbe_rounds(algorithm);
        if (!rounds) return unreadable_protection(algorithm ? algorithm->algorithm : nullptr);
        if (auto r = charge(*rounds)) return r;
        Pkcs8Ptr p8(PKCS12_decrypt_skey(bag, pass_, pass_length_));
        if (!p8) return unreadable_protection(algorithm->algorithm);
        return add_key(p8.get());
      }
      case NID_certBag: {
        if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate) return std::nullopt;
        X509Ptr certificate(PKCS12_SAFEBAG_get1_cert(bag));
        if (!certificate) return damaged("a certificate entry cannot be read");
        contents.certificates.push_back(std::move(certificate));
        return std::nullopt;
      }
      case NID_safeContentsBag:
        if (depth + 1 >= limits_.max_nesting) return damaged("its entries are nested too deep");
        return read_bags(PKCS12_SAFEBAG_get0_safes(bag), depth + 1);
      default:
        return std::nullopt;  // CRLs, secrets, other certificate types: not ours to read
    }
  }

  std::optional<Refused> add_key(const PKCS8_PRIV_KEY_INFO* p8) {
    EvpPkeyPtr key(EVP_PKCS82PKEY(p8));
    if (!key) {
      return Refused{Refusal::not_pkcs12,
                     "the private key in the .p12 file is of a kind this server cannot read: " +
                         std::string(kExportAgain)};
    }
    contents.keys.push_back(std::move(key));
    return std::nullopt;
  }

  const Pkcs12Limits& limits_;
  const char* pass_ = nullptr;
  int pass_length_ = 0;
  std::int64_t spent_ = 0;
  std::size_t items_ = 0;
};

}  // namespace

bool load_pkcs12_providers() {
  // Loading a provider by name stops OpenSSL from loading "default" on its own, so both are
  // loaded. RC2, DES and the other legacy ciphers are in no TLS default cipher list, so TLS is
  // unaffected. They are unloaded at exit, before OPENSSL_cleanup (registered earlier, so run
  // later): otherwise our references keep them alive past it and leak checkers report it.
  struct Providers {
    OSSL_PROVIDER* standard = nullptr;
    OSSL_PROVIDER* legacy = nullptr;
    Providers() {
      const ErrorQueueScope errors;  // a missing legacy module leaves errors we do not pass on
      standard = OSSL_PROVIDER_load(nullptr, "default");
      legacy = OSSL_PROVIDER_load(nullptr, "legacy");
    }
    ~Providers() {
      if (legacy != nullptr) OSSL_PROVIDER_unload(legacy);
      if (standard != nullptr) OSSL_PROVIDER_unload(standard);
    }
  };
  static const Providers providers;
  return providers.legacy != nullptr;
}

std::variant<Pkcs12Contents, Refused> read_pkcs12(std::string_view der, std::string_view password,
                                                  const Pkcs12Limits& limits) {
  load_pkcs12_providers();
  Pkcs12Ptr p12(decode(d2i_PKCS12, der));
  if (!p12) {
    return Refused{Refusal::not_pkcs12,
                   "the file is not a PKCS#12 (.p12) file, or it is cut short or damaged: " +
                       std::string(kExportAgain)};
  }

  // The MAC proves the password before anything is decrypted: a mismatch is a wrong password,
  // while a file that does not parse above is damaged. A file without one cannot tell the two
  // apart, and Keychain always writes one.
  if (PKCS12_mac_present(p12.get()) != 1) {
    return Refused{Refusal::not_pkcs12,
                   "the .p12 file has no integrity check (MAC), so neither its password nor its "
                   "contents can be verified: " +
                       std::string(kExportAgain)};
  }
  const X509_ALGOR* mac_algorithm = nullptr;
  const ASN1_INTEGER* mac_rounds_value = nullptr;
  PKCS12_get0_mac(nullptr, &mac_algorithm, nullptr, &mac_rounds_value, p12.get());
  const ASN1_OBJECT* mac_oid = nullptr;
  X509_ALGOR_get0(&mac_oid, nullptr, nullptr, mac_algorithm);
  const Owned<EVP_MD, free_md> mac_digest(
      EVP_MD_fetch(nullptr, OBJ_nid2sn(OBJ_obj2nid(mac_oid)), nullptr));
  if (!mac_digest) return unreadable_protection(mac_oid);
  const auto mac_rounds = mac_rounds_value == nullptr ? std::optional<std::int64_t>(1)
                                                      : positive_integer(mac_rounds_value);
  if (!mac_rounds) return damaged("its integrity check has an invalid round count");

  Walker walker(limits);
  const int length = static_cast<int>(password.size());
  bool verified = false;
  if (password.empty()) {
    for (const char* candidate : {static_cast<const char*>(nullptr), ""}) {
      if (auto r = walker.charge(*mac_rounds)) return *r;
      if (PKCS12_verify_mac(p12.get(), candidate, 0) == 1) {
        walker.use_password(candidate, 0);
        verified = true;
        break;
      }
    }
  } else {
    if (auto r = walker.charge(*mac_rounds)) return *r;
    verified = PKCS12_verify_mac(p12.get(), password.data(), length) == 1;
    walker.use_password(password.data(), length);
  }
  if (!verified) {
    return Refused{Refusal::wrong_password,
                   "the password does not open this file: check it, or export the certificate "
                   "again from Keychain Access with a password you choose and give that one (if "
                   "the password is right, the file was changed after export: upload the "
                   "original)"};
  }

  AuthsafesPtr parts(PKCS12_unpack_authsafes(p12.get()));
  if (!parts) return damaged("its list of contents cannot be read");
  for (int i = 0; i < sk_PKCS7_num(parts.get()); ++i) {
    if (auto r = walker.read_part(sk_PKCS7_value(parts.get(), i))) return *r;
  }
  return std::move(walker.contents);
}

}  // namespace mp::certs::detail
