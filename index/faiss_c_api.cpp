// The subset of the FAISS C API that imgret calls, implemented against
// Debian's libfaiss 1.7.3 (which ships the C API headers but not libfaiss_c).
// Signatures are upstream's (faiss/c_api/*.h), plus the functions declared in
// faiss_ext.h. This is the only C++ in imgret: everything else is C and sees
// FAISS only through these functions.
//
// Every function that can fail catches every exception, keeps it for
// faiss_get_last_error() (per thread, as upstream does) and returns the
// upstream error code; nothing is printed.

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexBinary_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "faiss_ext.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexBinary.h>
#include <faiss/IndexBinaryHash.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace {

thread_local std::exception_ptr last_exception;
thread_local std::string last_message;

// Runs f, translating exceptions into upstream's error codes.
template <typename F> int guarded(F &&f) {
    try {
        f();
        return 0;
    } catch (const faiss::FaissException &) {
        last_exception = std::current_exception();
        return FAISS_EXCEPT;
    } catch (const std::exception &) {
        last_exception = std::current_exception();
        return STD_EXCEPT;
    } catch (...) {
        last_exception = std::make_exception_ptr(std::runtime_error("unknown exception"));
        return UNKNOWN_EXCEPT;
    }
}

faiss::Index *idx(FaissIndex *p) {
    return reinterpret_cast<faiss::Index *>(p);
}
const faiss::Index *idx(const FaissIndex *p) {
    return reinterpret_cast<const faiss::Index *>(p);
}
faiss::IndexBinary *bin(FaissIndexBinary *p) {
    return reinterpret_cast<faiss::IndexBinary *>(p);
}
const faiss::IndexBinary *bin(const FaissIndexBinary *p) {
    return reinterpret_cast<const faiss::IndexBinary *>(p);
}
const faiss::IDSelector *sel(const FaissIDSelector *p) {
    return reinterpret_cast<const faiss::IDSelector *>(p);
}

} // namespace

extern "C" {

// ---- errors (error_c.h) ----

const char *faiss_get_last_error() {
    if (!last_exception) return nullptr;
    try {
        std::rethrow_exception(last_exception);
    } catch (const std::exception &e) {
        last_message = e.what();
    } catch (...) {
        last_message = "unknown exception";
    }
    return last_message.c_str();
}

// ---- Index (Index_c.h) ----

void faiss_Index_free(FaissIndex *obj) {
    delete idx(obj);
}
int faiss_Index_d(const FaissIndex *obj) {
    return static_cast<int>(idx(obj)->d);
}
int faiss_Index_is_trained(const FaissIndex *obj) {
    return idx(obj)->is_trained ? 1 : 0;
}
idx_t faiss_Index_ntotal(const FaissIndex *obj) {
    return idx(obj)->ntotal;
}
FaissMetricType faiss_Index_metric_type(const FaissIndex *obj) {
    return static_cast<FaissMetricType>(idx(obj)->metric_type);
}

int faiss_Index_train(FaissIndex *index, idx_t n, const float *x) {
    return guarded([&] { idx(index)->train(n, x); });
}

int faiss_Index_add(FaissIndex *index, idx_t n, const float *x) {
    return guarded([&] { idx(index)->add(n, x); });
}

int faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x, const idx_t *xids) {
    return guarded([&] { idx(index)->add_with_ids(n, x, xids); });
}

int faiss_Index_search(const FaissIndex *index, idx_t n, const float *x, idx_t k, float *distances,
                       idx_t *labels) {
    return guarded([&] { idx(index)->search(n, x, k, distances, labels); });
}

int faiss_Index_reset(FaissIndex *index) {
    return guarded([&] { idx(index)->reset(); });
}

int faiss_Index_remove_ids(FaissIndex *index, const FaissIDSelector *s, size_t *n_removed) {
    return guarded([&] {
        size_t n = idx(index)->remove_ids(*sel(s));
        if (n_removed) *n_removed = n;
    });
}

// ---- factories (index_factory_c.h; the binary one as upstream v1.9) ----

int faiss_index_factory(FaissIndex **p_index, int d, const char *description,
                        FaissMetricType metric) {
    return guarded([&] {
        *p_index = reinterpret_cast<FaissIndex *>(
            faiss::index_factory(d, description, static_cast<faiss::MetricType>(metric)));
    });
}

int faiss_index_binary_factory(FaissIndexBinary **p_index, int d, const char *description) {
    return guarded([&] {
        *p_index =
            reinterpret_cast<FaissIndexBinary *>(faiss::index_binary_factory(d, description));
    });
}

// ---- IndexIDMap (MetaIndexes_c.h) ----

int faiss_IndexIDMap_new(FaissIndexIDMap **p_index, FaissIndex *index) {
    return guarded(
        [&] { *p_index = reinterpret_cast<FaissIndexIDMap *>(new faiss::IndexIDMap(idx(index))); });
}

int faiss_IndexIDMap_own_fields(const FaissIndexIDMap *obj) {
    return reinterpret_cast<const faiss::IndexIDMap *>(obj)->own_fields ? 1 : 0;
}

void faiss_IndexIDMap_set_own_fields(FaissIndexIDMap *obj, int own) {
    reinterpret_cast<faiss::IndexIDMap *>(obj)->own_fields = own != 0;
}

FaissIndex *faiss_IndexIDMap_sub_index(FaissIndexIDMap *index) {
    return reinterpret_cast<FaissIndex *>(reinterpret_cast<faiss::IndexIDMap *>(index)->index);
}

FaissIndexIDMap *faiss_IndexIDMap_cast(FaissIndex *index) {
    return reinterpret_cast<FaissIndexIDMap *>(dynamic_cast<faiss::IndexIDMap *>(idx(index)));
}

// ---- IDSelector (impl/AuxIndexStructures_c.h) ----

void faiss_IDSelector_free(FaissIDSelector *obj) {
    delete reinterpret_cast<faiss::IDSelector *>(obj);
}

int faiss_IDSelectorBatch_new(FaissIDSelectorBatch **p_sel, size_t n, const idx_t *indices) {
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorBatch *>(
            new faiss::IDSelectorBatch(static_cast<faiss::Index::idx_t>(n), indices));
    });
}

// ---- ParameterSpace (AutoTune_c.h) ----

int faiss_ParameterSpace_new(FaissParameterSpace **space) {
    return guarded(
        [&] { *space = reinterpret_cast<FaissParameterSpace *>(new faiss::ParameterSpace()); });
}

void faiss_ParameterSpace_free(FaissParameterSpace *space) {
    delete reinterpret_cast<faiss::ParameterSpace *>(space);
}

int faiss_ParameterSpace_set_index_parameter(const FaissParameterSpace *space, FaissIndex *index,
                                             const char *name, double value) {
    return guarded([&] {
        reinterpret_cast<const faiss::ParameterSpace *>(space)->set_index_parameter(idx(index),
                                                                                    name, value);
    });
}

// ---- index I/O (index_io_c.h) ----

int faiss_write_index(const FaissIndex *index, FILE *f) {
    return guarded([&] { faiss::write_index(idx(index), f); });
}

int faiss_write_index_fname(const FaissIndex *index, const char *fname) {
    return guarded([&] { faiss::write_index(idx(index), fname); });
}

int faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out) {
    return guarded(
        [&] { *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(f, io_flags)); });
}

int faiss_read_index_fname(const char *fname, int io_flags, FaissIndex **p_out) {
    return guarded(
        [&] { *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(fname, io_flags)); });
}

int faiss_write_index_binary(const FaissIndexBinary *index, FILE *f) {
    return guarded([&] { faiss::write_index_binary(bin(index), f); });
}

int faiss_write_index_binary_fname(const FaissIndexBinary *index, const char *fname) {
    return guarded([&] { faiss::write_index_binary(bin(index), fname); });
}

int faiss_read_index_binary(FILE *f, int io_flags, FaissIndexBinary **p_out) {
    return guarded([&] {
        *p_out = reinterpret_cast<FaissIndexBinary *>(faiss::read_index_binary(f, io_flags));
    });
}

int faiss_read_index_binary_fname(const char *fname, int io_flags, FaissIndexBinary **p_out) {
    return guarded([&] {
        *p_out = reinterpret_cast<FaissIndexBinary *>(faiss::read_index_binary(fname, io_flags));
    });
}

// ---- IndexBinary (IndexBinary_c.h) ----

void faiss_IndexBinary_free(FaissIndexBinary *obj) {
    delete bin(obj);
}
int faiss_IndexBinary_d(const FaissIndexBinary *obj) {
    return static_cast<int>(bin(obj)->d);
}
int faiss_IndexBinary_is_trained(const FaissIndexBinary *obj) {
    return bin(obj)->is_trained ? 1 : 0;
}
idx_t faiss_IndexBinary_ntotal(const FaissIndexBinary *obj) {
    return bin(obj)->ntotal;
}

int faiss_IndexBinary_train(FaissIndexBinary *index, idx_t n, const uint8_t *x) {
    return guarded([&] { bin(index)->train(n, x); });
}

int faiss_IndexBinary_add(FaissIndexBinary *index, idx_t n, const uint8_t *x) {
    return guarded([&] { bin(index)->add(n, x); });
}

int faiss_IndexBinary_add_with_ids(FaissIndexBinary *index, idx_t n, const uint8_t *x,
                                   const idx_t *xids) {
    return guarded([&] { bin(index)->add_with_ids(n, x, xids); });
}

int faiss_IndexBinary_search(const FaissIndexBinary *index, idx_t n, const uint8_t *x, idx_t k,
                             int32_t *distances, idx_t *labels) {
    return guarded([&] { bin(index)->search(n, x, k, distances, labels); });
}

int faiss_IndexBinary_reset(FaissIndexBinary *index) {
    return guarded([&] { bin(index)->reset(); });
}

int faiss_IndexBinary_remove_ids(FaissIndexBinary *index, const FaissIDSelector *s,
                                 size_t *n_removed) {
    return guarded([&] {
        size_t n = bin(index)->remove_ids(*sel(s));
        if (n_removed) *n_removed = n;
    });
}

// ---- IndexBinaryIDMap (faiss_ext.h) ----

int faiss_IndexBinaryIDMap_new(FaissIndexBinaryIDMap **p_index, FaissIndexBinary *index) {
    return guarded([&] {
        *p_index =
            reinterpret_cast<FaissIndexBinaryIDMap *>(new faiss::IndexBinaryIDMap(bin(index)));
    });
}

int faiss_IndexBinaryIDMap_own_fields(const FaissIndexBinaryIDMap *obj) {
    return reinterpret_cast<const faiss::IndexBinaryIDMap *>(obj)->own_fields ? 1 : 0;
}

void faiss_IndexBinaryIDMap_set_own_fields(FaissIndexBinaryIDMap *obj, int own) {
    reinterpret_cast<faiss::IndexBinaryIDMap *>(obj)->own_fields = own != 0;
}

FaissIndexBinary *faiss_IndexBinaryIDMap_sub_index(FaissIndexBinaryIDMap *index) {
    return reinterpret_cast<FaissIndexBinary *>(
        reinterpret_cast<faiss::IndexBinaryIDMap *>(index)->index);
}

FaissIndexBinaryIDMap *faiss_IndexBinaryIDMap_cast(FaissIndexBinary *index) {
    return reinterpret_cast<FaissIndexBinaryIDMap *>(
        dynamic_cast<faiss::IndexBinaryIDMap *>(bin(index)));
}

int faiss_IndexBinary_set_nflip(FaissIndexBinary *index, int nflip) {
    return guarded([&] {
        faiss::IndexBinary *b = bin(index);
        if (auto *h = dynamic_cast<faiss::IndexBinaryHash *>(b)) {
            h->nflip = nflip;
        } else if (auto *m = dynamic_cast<faiss::IndexBinaryMultiHash *>(b)) {
            m->nflip = nflip;
        } else {
            throw std::invalid_argument("nflip applies only to BHash indexes");
        }
    });
}

} // extern "C"
