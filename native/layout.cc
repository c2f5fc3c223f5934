// The KVM ABI table (kvm_abi.c) as a JS object: { structs: { name: { size, fields } }, ioctls }.
// lib/kvm keeps its own TypeScript copy of these (so the koffi binding works without a compiler);
// the tests compare the two.
#include "kvm_abi.h"
#include "nodevmm.h"

namespace nodevmm {

Napi::Object LayoutTable(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  Napi::Object structs = Napi::Object::New(env);
  for (size_t i = 0; i < nodevmm_field_count; i++) {
    const nodevmm_field& row = nodevmm_fields[i];
    if (!structs.Has(row.strct)) {
      Napi::Object s = Napi::Object::New(env);
      s.Set("fields", Napi::Object::New(env));
      structs.Set(row.strct, s);
    }
    Napi::Object s = structs.Get(row.strct).As<Napi::Object>();
    Napi::Number value = Napi::Number::New(env, static_cast<double>(row.value));
    if (row.field == nullptr) {
      s.Set("size", value);
    } else {
      s.Get("fields").As<Napi::Object>().Set(row.field, value);
    }
  }
  out.Set("structs", structs);
  Napi::Object ioctls = Napi::Object::New(env);
  for (size_t i = 0; i < nodevmm_ioctl_count; i++) {
    ioctls.Set(nodevmm_ioctls[i].name, Napi::Number::New(env, nodevmm_ioctls[i].request));
  }
  out.Set("ioctls", ioctls);
  return out;
}

const char* IoctlName(uint32_t request) {
  for (size_t i = 0; i < nodevmm_ioctl_count; i++) {
    if (nodevmm_ioctls[i].request == request) return nodevmm_ioctls[i].name;
  }
  return nullptr;
}

}  // namespace nodevmm
