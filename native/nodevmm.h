// Shared declarations of the nodevmm addon's C++ translation units.
#pragma once

#include <napi.h>

#include <cstdint>

namespace nodevmm {

/** "KVM_RUN" for KVM_RUN's request number, or nullptr for a request this binding does not know. */
const char* IoctlName(uint32_t request);

Napi::Object LayoutTable(Napi::Env env);

}  // namespace nodevmm
