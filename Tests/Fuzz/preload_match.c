// libFuzzer target for the preload library's address matching (Tests/Fuzz/run builds it
// with clang -fsanitize=fuzzer,address). The input is: one byte choosing the held
// socket's family, one byte its address length, that many bytes of its address, and
// the rest the address the server binds, in a buffer of exactly that length so that
// AddressSanitizer sees any read past what the server passed.
#include "../../Sources/CBatonPreload/address_match.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) {
        return 0;
    }
    static const int families[] = {AF_INET, AF_INET6, AF_UNIX};
    baton_preload_socket entry;
    memset(&entry, 0, sizeof(entry));
    entry.family = data[0] < 3 ? families[data[0]] : data[0];
    size_t held = data[1];
    if (held > sizeof(entry.address)) {
        held = sizeof(entry.address);
    }
    if (held > size - 2) {
        held = size - 2;
    }
    memcpy(&entry.address, data + 2, held);
    entry.address.ss_family = (sa_family_t)entry.family;
    entry.length = (socklen_t)held;

    size_t length = size - 2 - held;
    // bind() passes a NULL address to the C library before matching; malloc(0) is a
    // real (empty) allocation under AddressSanitizer.
    struct sockaddr *wanted = malloc(length);
    if (wanted == NULL) {
        return 0;
    }
    memcpy(wanted, data + 2 + held, length);
    int match = baton_preload_match(&entry, wanted, (socklen_t)length);
    if (match < 0 || match > 2) {
        abort();
    }
    free(wanted);
    return 0;
}
