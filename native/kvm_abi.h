/* C interface of kvm_abi.c (see there why it is C). */
#ifndef NODEVMM_KVM_ABI_H
#define NODEVMM_KVM_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nodevmm_ioctl {
  const char* name;
  uint32_t request;
};
extern const struct nodevmm_ioctl nodevmm_ioctls[];
extern const size_t nodevmm_ioctl_count;

/* field == NULL: the row gives sizeof(struct); otherwise offsetof(struct, field) */
struct nodevmm_field {
  const char* strct;
  const char* field;
  size_t value;
};
extern const struct nodevmm_field nodevmm_fields[];
extern const size_t nodevmm_field_count;

/* Minimum argument size of a variable-length ioctl from the count in its header; 0 if fixed. */
size_t nodevmm_variable_arg_size(uint32_t request, const uint8_t* arg, size_t available);

#ifdef __cplusplus
}
#endif
#endif
