/* The FAISS C API functions imgret calls that the 1.7.3 headers do not
 * declare. Private to index/.
 *
 * faiss_index_binary_factory is upstream's (c_api/index_factory_c.h since
 * v1.9.0) and the IndexBinaryIDMap functions follow upstream's IndexIDMap
 * ones (binary IDMap entered the upstream C API in v1.13). The nflip setter
 * is imgret's own, in the upstream style: the C API has no other way to make
 * a hash index probe neighbouring buckets. */
#ifndef IMGRET_INDEX_FAISS_EXT_H
#define IMGRET_INDEX_FAISS_EXT_H

#include <faiss/c_api/IndexBinary_c.h>
#include <faiss/c_api/faiss_c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Builds a binary index from a description: "BFlat", "BHash<b>",
 * "BHash<nhash>x<b>", "BIVF<n>", "BHNSW<M>". d is in bits. */
int faiss_index_binary_factory(FaissIndexBinary **p_index, int d, const char *description);

/* IndexBinaryIDMap: translates a binary index's sequential labels to ids. */
FAISS_DECLARE_CLASS_INHERITED(IndexBinaryIDMap, IndexBinary)
FAISS_DECLARE_GETTER_SETTER(IndexBinaryIDMap, int, own_fields)
int faiss_IndexBinaryIDMap_new(FaissIndexBinaryIDMap **p_index, FaissIndexBinary *index);
FaissIndexBinary *faiss_IndexBinaryIDMap_sub_index(FaissIndexBinaryIDMap *index);
/* The index itself when it is an IndexBinaryIDMap, else NULL. */
FaissIndexBinaryIDMap *faiss_IndexBinaryIDMap_cast(FaissIndexBinary *index);

/* imgret extension: sets the number of bit flips a hash index (IndexBinaryHash
 * or IndexBinaryMultiHash) probes at search time. Fails on any other index. */
int faiss_IndexBinary_set_nflip(FaissIndexBinary *index, int nflip);

#ifdef __cplusplus
}
#endif

#endif
