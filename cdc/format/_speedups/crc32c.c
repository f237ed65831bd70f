/* crc32c.c -- CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as the `crc32c` package
 * and RocksDB/LevelDB compute it (init ~0, final ~0).
 *
 * Invariant: cdc_crc32c() == cdc_crc32c_table() == crc32c.crc32c() for every input
 * (tests/decoders/test_speedups_wal.py checks it with hypothesis). The SSE4.2 `crc32`
 * instruction is used when the CPU has it (runtime detection), else slice-by-8 tables.
 */
#include "speedups.h"

static uint32_t tbl[8][256];
static int use_hw = 0;

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CDC_HAVE_SSE42_PATH 1
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = _mm_crc32_u8(crc, *p++);
        n--;
    }
#if defined(__x86_64__)
    uint64_t c64 = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c64;
#endif
    while (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        crc = _mm_crc32_u32(crc, w);
        p += 4;
        n -= 4;
    }
    while (n--)
        crc = _mm_crc32_u8(crc, *p++);
    return ~crc;
}
#endif

void cdc_crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        tbl[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            tbl[t][i] = (tbl[t - 1][i] >> 8) ^ tbl[0][tbl[t - 1][i] & 0xFF];
#ifdef CDC_HAVE_SSE42_PATH
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

int cdc_crc32c_hw(void) { return use_hw; }

uint32_t cdc_crc32c_table(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
        lo ^= crc;
        crc = tbl[7][lo & 0xFF] ^ tbl[6][(lo >> 8) & 0xFF] ^ tbl[5][(lo >> 16) & 0xFF] ^ tbl[4][lo >> 24]
            ^ tbl[3][p[4]] ^ tbl[2][p[5]] ^ tbl[1][p[6]] ^ tbl[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ tbl[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

uint32_t cdc_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
#ifdef CDC_HAVE_SSE42_PATH
    if (use_hw)
        return crc32c_sse42(crc, p, n);
#endif
    return cdc_crc32c_table(crc, p, n);
}
