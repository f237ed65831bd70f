// cdc test writer: drives a real RocksDB (plain DB or TransactionDB) from a command script on
// stdin and reports what it committed with the store's own sequence numbers. The command
// language is documented in tests/cxx/__init__.py (keep the two in sync).
#include <rocksdb/db.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/debug.h>
#include <rocksdb/utilities/transaction.h>
#include <rocksdb/utilities/transaction_db.h>
#include <rocksdb/write_batch.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace ROCKSDB_NAMESPACE;

namespace {

class Concat : public AssociativeMergeOperator {
 public:
  bool Merge(const Slice&, const Slice* existing, const Slice& value, std::string* out,
             Logger*) const override {
    out->clear();
    if (existing) out->assign(existing->data(), existing->size());
    out->append(value.data(), value.size());
    return true;
  }
  const char* Name() const override { return "cdc-test-concat"; }
};

std::string unescape(const std::string& s) {  // %XX -> byte; a lone "-" is the empty string
  std::string out;
  if (s == "-") return out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::strtol(s.substr(i + 1, 2).c_str(), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out.empty() ? "-" : out;
}

struct Writer {
  std::string path, policy = "none", wal_dir;
  std::vector<std::string> cf_names;
  long wal_ttl = 0;
  long unprepared_threshold = 0;
  bool manual_wal_flush = false;
  DB* db = nullptr;
  TransactionDB* tdb = nullptr;
  std::map<std::string, ColumnFamilyHandle*> cfs;
  std::vector<ColumnFamilyHandle*> handles;
  std::map<std::string, Transaction*> txns;
  std::unique_ptr<WriteBatch> batch;  // between "batch" and "end"
  std::string target;                 // "" = db/batch, else a transaction name
  std::vector<std::string> committed;  // the writer's log ("committed ..." lines)
  std::map<std::string, std::vector<std::string>> pending;  // per txn, until commit

  void die(const std::string& what, const Status& s) {
    std::cout << "error " << what << ": " << s.ToString() << std::endl;
    std::exit(3);
  }

  void open() {
    Options o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    o.merge_operator = std::make_shared<Concat>();
    o.WAL_ttl_seconds = wal_ttl;
    o.manual_wal_flush = manual_wal_flush;
    if (!wal_dir.empty()) o.wal_dir = wal_dir;
    std::vector<ColumnFamilyDescriptor> descs;
    descs.emplace_back(kDefaultColumnFamilyName, ColumnFamilyOptions(o));
    for (auto& n : cf_names) descs.emplace_back(n, ColumnFamilyOptions(o));
    handles.clear();
    Status s;
    if (policy == "none") {
      s = DB::Open(DBOptions(o), path, descs, &handles, &db);
    } else {
      TransactionDBOptions t;
      if (policy == "committed") t.write_policy = WRITE_COMMITTED;
      else if (policy == "prepared") t.write_policy = WRITE_PREPARED;
      else if (policy == "unprepared") t.write_policy = WRITE_UNPREPARED;
      else { std::cout << "error unknown policy " << policy << std::endl; std::exit(2); }
      s = TransactionDB::Open(DBOptions(o), t, path, descs, &handles, &tdb);
      db = tdb;
    }
    if (!s.ok()) die("open", s);
    cfs.clear();
    cfs["default"] = handles[0];
    for (size_t i = 0; i < cf_names.size(); i++) cfs[cf_names[i]] = handles[i + 1];
  }

  ColumnFamilyHandle* cf(const std::string& name) {
    auto it = cfs.find(name);
    if (it == cfs.end()) { std::cout << "error unknown cf " << name << std::endl; std::exit(2); }
    return it->second;
  }

  void log_op(const std::string& line) {
    if (!target.empty()) pending[target].push_back(line);
    else if (batch) pending[""].push_back(line);
    else committed.push_back(line);
  }

  // one data op on the current target (db, open batch or transaction)
  void data(const std::vector<std::string>& a) {
    const std::string& op = a[0];
    Status s;
    WriteOptions wo;
    Transaction* t = target.empty() ? nullptr : txns[target];
    if (op == "logdata") {
      std::string blob = unescape(a.at(1));
      if (t) t->PutLogData(blob);
      else if (batch) s = batch->PutLogData(blob);
      else { WriteBatch b; b.PutLogData(blob); b.Put(cf("default"), "__logdata_carrier", blob);
             s = db->Write(wo, &b); log_op("put default " + hex("__logdata_carrier") + " " + hex(blob)); }
      if (!s.ok()) die(op, s);
      return;
    }
    ColumnFamilyHandle* h = cf(a.at(1));
    std::string k = unescape(a.at(2));
    std::string v = a.size() > 3 ? unescape(a[3]) : "";
    if (op == "put") s = t ? t->Put(h, k, v) : batch ? batch->Put(h, k, v) : db->Put(wo, h, k, v);
    else if (op == "delete") s = t ? t->Delete(h, k) : batch ? batch->Delete(h, k) : db->Delete(wo, h, k);
    else if (op == "singledelete") s = t ? t->SingleDelete(h, k) : batch ? batch->SingleDelete(h, k) : db->SingleDelete(wo, h, k);
    else if (op == "merge") s = t ? t->Merge(h, k, v) : batch ? batch->Merge(h, k, v) : db->Merge(wo, h, k, v);
    else if (op == "deleterange") {
      if (t) { std::cout << "error deleterange in a transaction" << std::endl; std::exit(2); }
      s = batch ? batch->DeleteRange(h, k, v) : db->DeleteRange(wo, h, k, v);
    }
    if (!s.ok()) die(op, s);
    log_op(op + " " + a[1] + " " + hex(k) + " " + hex(v));
  }

  void report(const char* tag) {
    for (auto& l : committed) std::cout << "committed " << l << "\n";
    for (auto& kv : cfs) {
      std::vector<KeyVersion> vs;
      Status s = GetAllKeyVersions(db, kv.second, Slice(), Slice(), 100000000, &vs);
      if (!s.ok()) die("GetAllKeyVersions", s);
      for (auto& v : vs)
        std::cout << "kv " << kv.first << " " << hex(v.user_key) << " " << v.sequence << " " << v.type
                  << " " << hex(v.value) << "\n";
    }
    std::cout << tag << " " << db->GetLatestSequenceNumber() << std::endl;
  }

  void close() {
    for (auto& t : txns) delete t.second;
    txns.clear();
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    handles.clear();
    delete db;
    db = nullptr;
    tdb = nullptr;
  }
};

}  // namespace

int main(int argc, char** argv) {
  Writer w;
  if (argc < 2) { std::cerr << "usage: writer DB [--policy P] [--cf NAME]... [--wal-ttl S] [--wal-dir DIR] [--unprepared-threshold N]\n"; return 2; }
  w.path = argv[1];
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    std::string v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--policy") { w.policy = v; i++; }
    else if (a == "--cf") { w.cf_names.push_back(v); i++; }
    else if (a == "--wal-ttl") { w.wal_ttl = std::atol(v.c_str()); i++; }
    else if (a == "--wal-dir") { w.wal_dir = v; i++; }
    else if (a == "--unprepared-threshold") { w.unprepared_threshold = std::atol(v.c_str()); i++; }
    else { std::cerr << "unknown option " << a << "\n"; return 2; }
  }
  w.open();
  std::cout << "ready " << w.db->GetLatestSequenceNumber() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::vector<std::string> a;
    std::string tok;
    while (in >> tok) a.push_back(tok);
    if (a.empty() || a[0][0] == '#') continue;
    const std::string& c = a[0];
    Status s;
    if (c == "put" || c == "delete" || c == "singledelete" || c == "merge" || c == "deleterange" || c == "logdata") {
      w.data(a);
    } else if (c == "batch") {
      w.batch.reset(new WriteBatch());
      w.target.clear();
    } else if (c == "end") {
      if (w.batch) {
        s = w.db->Write(WriteOptions(), w.batch.get());
        if (!s.ok()) w.die("write batch", s);
        for (auto& l : w.pending[""]) w.committed.push_back(l);
        w.pending.erase("");
        w.batch.reset();
      }
      w.target.clear();
    } else if (c == "txn") {
      if (!w.tdb) { std::cout << "error txn needs --policy" << std::endl; return 2; }
      TransactionOptions to;
      if (w.unprepared_threshold > 0) to.write_batch_flush_threshold = w.unprepared_threshold;
      Transaction* t = w.tdb->BeginTransaction(WriteOptions(), to);
      s = t->SetName(a.at(1));
      if (!s.ok()) w.die("txn", s);
      w.txns[a[1]] = t;
      w.target = a[1];
    } else if (c == "use") {
      w.target = a.size() > 1 ? a[1] : "";
    } else if (c == "prepare" || c == "commit" || c == "rollback") {
      Transaction* t = w.txns.at(a.at(1));
      s = c == "prepare" ? t->Prepare() : c == "commit" ? t->Commit() : t->Rollback();
      if (!s.ok()) w.die(c, s);
      if (c == "commit") for (auto& l : w.pending[a[1]]) w.committed.push_back(l);
      if (c != "prepare") { w.pending.erase(a[1]); delete t; w.txns.erase(a[1]); if (w.target == a[1]) w.target.clear(); }
    } else if (c == "parallel") {
      // N threads x COUNT writes each, at once (RocksDB merges them into write groups): single
      // puts, batches repeating a key, and (TransactionDB) 2PC and one-phase transactions.
      // Thread t writes keys "p<t>_<j>" only (no lock conflicts); every write is logged.
      int threads = std::stoi(a.at(1)), count = std::stoi(a.at(2));
      std::mutex mu;
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; t++) {
        pool.emplace_back([&w, &mu, t, count]() {
          WriteOptions wo;
          ColumnFamilyHandle* h = w.cfs["default"];
          for (int i = 0; i < count; i++) {
            std::string k = "p" + std::to_string(t) + "_" + std::to_string(i % 5);
            std::string k2 = "p" + std::to_string(t) + "_" + std::to_string((i + 1) % 5);
            std::string v = "v" + std::to_string(i);
            std::vector<std::string> log;
            Status s;
            int kind = (i + t) % (w.tdb ? 4 : 2);
            if (kind == 0) {
              s = w.db->Put(wo, h, k, v);
              log.push_back("put default " + hex(k) + " " + hex(v));
            } else if (kind == 1) {
              WriteBatch b;
              b.Put(h, k, v + "a"); b.Put(h, k2, v); b.Put(h, k, v + "b");
              s = w.db->Write(wo, &b);
              log = {"put default " + hex(k) + " " + hex(v + "a"), "put default " + hex(k2) + " " + hex(v),
                     "put default " + hex(k) + " " + hex(v + "b")};
            } else {
              Transaction* txn = w.tdb->BeginTransaction(wo);
              s = txn->SetName("par" + std::to_string(t) + "_" + std::to_string(i));
              if (s.ok()) s = txn->Put(h, k, v);
              if (s.ok()) s = txn->Put(h, k, v + "x");
              if (s.ok() && kind == 2) s = txn->Prepare();
              if (s.ok()) s = txn->Commit();
              delete txn;
              log = {"put default " + hex(k) + " " + hex(v), "put default " + hex(k) + " " + hex(v + "x")};
            }
            std::lock_guard<std::mutex> g(mu);
            if (!s.ok()) { std::cout << "error parallel: " << s.ToString() << std::endl; std::exit(3); }
            for (auto& l : log) w.committed.push_back(l);
          }
        });
      }
      for (auto& th : pool) th.join();
    } else if (c == "flush") {
      FlushOptions fo;
      for (auto* h : w.handles) { s = w.db->Flush(fo, h); if (!s.ok()) w.die("flush", s); }
    } else if (c == "syncwal") {
      s = w.db->FlushWAL(true);
      if (!s.ok()) w.die("syncwal", s);
    } else if (c == "echo") {
      std::cout << line << std::endl;
      continue;
    } else if (c == "report") {
      w.report("reported");
      continue;
    } else if (c == "crash") {
      std::cout << "crashed " << w.db->GetLatestSequenceNumber() << std::endl;
      std::fflush(stdout);
      _exit(0);
    } else if (c == "reopen") {
      w.close();
      w.open();
    } else if (c == "close") {
      break;
    } else {
      std::cout << "error unknown command " << c << std::endl;
      return 2;
    }
    std::cout << "ok " << c << " " << w.db->GetLatestSequenceNumber() << std::endl;
  }
  w.report("closed");
  w.close();
  return 0;
}
