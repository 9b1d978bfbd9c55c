/* Wine 8 lacks bcryptprimitives.dll, whose ProcessPrng Rust's std calls for random bytes.
 * This stand-in, placed beside the .exe, forwards it to advapi32's RtlGenRandom
 * (SystemFunction036). Only for running the Windows build under Wine in tests; a real Windows
 * has the real DLL. Built by scripts/windows-test.sh. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
