// Placeholder until topology lands.
namespace moetier::sched {}
