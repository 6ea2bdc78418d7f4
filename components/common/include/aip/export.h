/* SPDX-License-Identifier: MIT */
/*
 * aip/export.h — AIP_API, the mark of every function libaip exports.
 *
 * libaip is built with hidden visibility (-fvisibility=hidden): only functions declared with
 * AIP_API in the installed headers are in libaip.so's dynamic symbol table; everything else
 * (internal functions, the generated protobuf-c code) stays private to the library, so it can
 * change without breaking programs linked against it. tools/check-symbols.sh checks that the
 * two lists match, and tools/test.sh --stage abi compares the ABI with abi/libaip.so.0.abi.
 *
 * The library's own build defines AIP_BUILDING_LIBRARY; a program that includes the headers
 * gets an empty AIP_API (nothing to import: ELF needs no dllimport). Included by every other
 * installed header; no need to include it yourself.
 */
#ifndef AIP_EXPORT_H
#define AIP_EXPORT_H

#if defined(AIP_BUILDING_LIBRARY) && (defined(__GNUC__) || defined(__clang__))
#define AIP_API __attribute__((visibility("default")))
#else
#define AIP_API
#endif

#endif /* AIP_EXPORT_H */
