// A multipart/form-data body as browsers build it, for the portal's upload tests.
#pragma once

#include <string>

namespace mp::test {

class Form {
 public:
  Form& field(const std::string& name, const std::string& value) {
    body_ += "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"" + name +
             "\"\r\n\r\n" + value + "\r\n";
    return *this;
  }
  Form& file(const std::string& name, const std::string& data) {
    body_ += "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"" + name +
             "\"; filename=\"push.p12\"\r\nContent-Type: application/x-pkcs12\r\n\r\n" + data +
             "\r\n";
    return *this;
  }
  std::string body() const { return body_ + "--" + kBoundary + "--\r\n"; }
  static std::string content_type() { return "multipart/form-data; boundary=" + kBoundary; }

 private:
  inline static const std::string kBoundary = "----WebKitFormBoundaryMpTest7MA4YWxk";
  std::string body_;
};

// A form the portal must refuse, with the status and error code it answers.
struct RefusedForm {
  std::string what;
  Form form;
  int status = 0;
  std::string error;
};

}  // namespace mp::test
