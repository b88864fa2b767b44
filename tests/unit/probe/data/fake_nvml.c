/* A stand-in libnvidia-ml.so.1 for the NVIDIA probe's tests: this machine has
 * no NVIDIA driver, and NVML is the one thing that cannot exist here.  It is
 * found the way the real one is (dlopen through LD_LIBRARY_PATH), so the
 * probe and nvidia-ml-py run unmodified against it.  FAKE_NVML_MODE picks the
 * answer: "ok" (one H200-shaped GPU with MIG on, one without MIG support),
 * "driver" (NVML_ERROR_DRIVER_NOT_LOADED) or "perm" (NVML_ERROR_NO_PERMISSION). */
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef void *nvmlDevice_t;

static int init_result(void) {
    const char *mode = getenv("FAKE_NVML_MODE");
    if (mode && !strcmp(mode, "driver")) return 9;
    if (mode && !strcmp(mode, "perm")) return 4;
    return 0;
}

int nvmlInitWithFlags(unsigned int flags) { (void)flags; return init_result(); }
int nvmlInit_v2(void) { return init_result(); }
int nvmlShutdown(void) { return 0; }

const char *nvmlErrorString(int r) {
    switch (r) {
    case 4: return "Insufficient Permissions";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

static int put(char *buf, unsigned int len, const char *s) {
    if (strlen(s) + 1 > len) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
    strcpy(buf, s);
    return 0;
}

int nvmlSystemGetDriverVersion(char *v, unsigned int n) { return put(v, n, "550.54.15"); }
int nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 12040; return 0; }
int nvmlSystemGetCudaDriverVersion(int *v) { *v = 12040; return 0; }
int nvmlDeviceGetCount_v2(unsigned int *c) { *c = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
    if (i > 1) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *d = (nvmlDevice_t)(unsigned long)(i + 1);
    return 0;
}
int nvmlDeviceGetName(nvmlDevice_t d, char *n, unsigned int len) {
    return put(n, len, (unsigned long)d == 1 ? "NVIDIA H200" : "NVIDIA L4");
}
int nvmlDeviceGetUUID(nvmlDevice_t d, char *u, unsigned int len) {
    return put(u, len, (unsigned long)d == 1 ? "GPU-11111111-2222-3333-4444-555555555555"
                                             : "GPU-66666666-7777-8888-9999-000000000000");
}
int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    m->total = (unsigned long long)d == 1 ? 150754820096ULL : 24152899584ULL;
    m->free = m->total;
    m->used = 0;
    return 0;
}
int nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    if ((unsigned long)d == 2) return 3; /* NVML_ERROR_NOT_SUPPORTED */
    *current = 1;
    *pending = 1;
    return 0;
}
